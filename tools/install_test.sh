#!/usr/bin/env bash
# What `pip install peftlab` gives a new user: build the wheel, install it with no extras into a fresh virtual
# environment (CPU torch pinned on the same pip line, locked versions unless PEFTLAB_DEPS=newest/oldest), then, from a
# folder outside the checkout: `import peftlab` prints nothing and pulls in no optional or dev package, the README
# quickstart runs and prints the numbers the README shows, a 7B model is planned from the shipped configs, and the
# optional parts say which extra to install.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
PY=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$PY" -m pip wheel -q --no-deps -w "$tmp/dist" . > "$tmp/wheel.log" 2>&1 || { tail -40 "$tmp/wheel.log"; exit 1; }
"$PY" -m venv "$tmp/venv"
cons=(); [ "${PEFTLAB_DEPS:-locked}" = locked ] && { grep -v '^torch==' tools/constraints.txt > "$tmp/cons.txt"; cons=(-c "$tmp/cons.txt"); }
pipq() { "$tmp/venv/bin/python" -m pip install -q "$@" 2>&1 | grep -v "^WARNING: Location" || true; }
pipq --upgrade pip
pipq "$TORCH_SPEC"
pipq "$tmp"/dist/peftlab-*.whl "$TORCH_SPEC" "${cons[@]}"
"$tmp/venv/bin/python" -c "import peftlab" 2>/dev/null || { echo "the wheel did not install"; exit 1; }
python_block=$(awk '/^## Quickstart/{q=1} q && /^```python/{p=1; next} p && /^```/{exit} p' README.md)
expected=$(printf '%s\n' "$python_block" | sed -n 's/^# \(trainable params: .*\)$/\1/p')
cd "$tmp"
printf '%s\n' "$python_block" > quickstart.py
env -u PYTHONPATH HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 "$tmp/venv/bin/python" - "$expected" "$root" <<'PY'
import contextlib, io, runpy, subprocess, sys
expected, root = sys.argv[1], sys.argv[2]
out = subprocess.run([sys.executable, "-c", "import peftlab, sys; print(sorted(m for m in ('bitsandbytes', 'fastcore', "
                      "'peft', 'datasets', 'accelerate', 'nbdev') if m in sys.modules))"], capture_output=True, text=True)
assert out.returncode == 0, out.stderr
assert out.stderr == "", f"`import peftlab` wrote to stderr:\n{out.stderr}"
assert out.stdout.strip() == "[]", f"`import peftlab` imported optional or dev packages: {out.stdout}"
import peftlab
assert not peftlab.__file__.startswith(root), f"peftlab was imported from the checkout ({peftlab.__file__}), not the wheel"
print("import peftlab: silent, no optional packages; from", peftlab.__file__)

buf = io.StringIO()
with contextlib.redirect_stdout(buf): runpy.run_path("quickstart.py", run_name="__main__")
assert expected and expected in buf.getvalue(), f"README quickstart printed {buf.getvalue()!r}, the README says {expected!r}"
import json, os
assert json.load(open("my-adapter/adapter_config.json"))["peft_type"] == "LORA"
assert os.path.getsize("my-adapter/adapter_model.safetensors") > 0
print("README quickstart:", expected)

from peftlab import LoraConfig, estimate_memory, meta_model
m = meta_model("llama-2-7b")
n = sum(p.numel() for p in m.parameters())
assert 6.5e9 < n < 7.0e9, n
est = estimate_memory(m, LoraConfig(r=16, target_modules="all-linear"), batch_size=4, seq_len=1024,
                      gradient_checkpointing=True)
assert sum(est.breakdown.values()) == est.total_bytes and 2 * n < est.total_bytes < 8 * n   # bf16 weights + the rest
print(f"llama-2-7b planned from the shipped config: {n / 1e9:.2f} B parameters, peak {est.total_gib:.1f} GiB "
      f"({est.peak_phase})")
print(est.to_frame().to_string())

for call, extra in [(lambda: peftlab.prepare_model_for_kbit_training(m), "peftlab[quant]")]:
    try: call(); raise AssertionError("expected an ImportError without bitsandbytes")
    except ImportError as e: assert extra in str(e), e
print("optional parts name their extra")
PY
echo "install test passed"
