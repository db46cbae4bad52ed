#!/usr/bin/env bash
# Create a virtual environment with the CPU build of PyTorch and peftlab's dev extras. Idempotent: re-runs only when
# settings.ini / setup.py / the lock change. Never pulls CUDA torch: torch is installed first, on its own, and pinned.
#
#   PEFTLAB_DEPS=locked (default)  .venv         exactly the versions in tools/constraints.txt (the last green run)
#   PEFTLAB_DEPS=newest            .venv-newest  the newest release of every dependency the index serves today
#   PEFTLAB_DEPS=oldest            .venv-oldest  the floors that settings.ini declares (requirements `>=` read as `==`)
#
# TORCH_SPEC overrides the torch pin (default torch==2.13.0, the CPU build this machine kind holds on disk; CI jobs
# elsewhere pass their own with a CPU wheel index).
set -euo pipefail
cd "$(dirname "$0")/.."
DEPS=${PEFTLAB_DEPS:-locked}
case $DEPS in
  locked) VENV=${VENV:-.venv} ;;
  newest) VENV=${VENV:-.venv-newest} ;;
  oldest) VENV=${VENV:-.venv-oldest} ;;
  *) echo "PEFTLAB_DEPS must be locked, newest or oldest, not '$DEPS'"; exit 2 ;;
esac
PY=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
stamp="$VENV/.peftlab-installed"
want=$(cat settings.ini setup.py tools/setup_env.sh tools/constraints.txt | sha256sum | cut -c1-16)-$DEPS-$TORCH_SPEC
[ "$DEPS" = newest ] && want="$want-$(date +%F)"   # newest: re-resolve once a day
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip "$@"; }
pip install -q --upgrade pip
pip install -q "$TORCH_SPEC"
cons=$(mktemp); trap 'rm -f "$cons"' EXIT
case $DEPS in
  locked) grep -v '^torch==' tools/constraints.txt > "$cons" ;;
  newest) : > "$cons" ;;
  oldest) "$VENV/bin/python" - > "$cons" <<'PY'
import configparser, re, shlex
cfg = configparser.ConfigParser(delimiters=["="]); cfg.read("settings.ini")
for req in shlex.split(cfg["DEFAULT"]["requirements"]):
    name, _, floor = req.partition(">=")
    if floor and name != "torch": print(f"{name}=={floor}")   # torch: TORCH_SPEC decides
# test tools are not floors: take the locked ones pip would otherwise backtrack through (old accelerate wants numpy<2)
for line in open("tools/constraints.txt"):
    if line.split("==")[0].lower() in ("accelerate", "datasets"): print(line.strip())
PY
  ;;
esac
upgrade=(); [ "$DEPS" = newest ] && upgrade=(--upgrade --upgrade-strategy eager)
export DS_BUILD_OPS=0   # deepspeed (dev extra, for the ZeRO tests) builds no CUDA / C++ ops at install time
pip install -q "${upgrade[@]}" -e ".[dev]" "$TORCH_SPEC" -c "$cons"
"$VENV/bin/python" - <<'PY'
import torch, transformers
assert not torch.version.cuda, f"a CUDA build of torch was installed ({torch.__version__}); peftlab's set-up installs the CPU build"
print("peftlab env ready: torch", torch.__version__, "· transformers", transformers.__version__)
PY
echo "$want" > "$stamp"
