#!/usr/bin/env bash
# The GPU check: one prepared script for a lent CUDA machine (under 10 minutes on one H200). Its image has CUDA torch,
# transformers, peft and accelerate but no bitsandbytes: carry the wheel (x86-64, Python 3.12) in .whl/ —
#   here:  echo /.whl/ >> .git/info/exclude
#          python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#            --platform manylinux_2_24_x86_64 --platform manylinux_2_28_x86_64 -d .whl bitsandbytes==0.50.2
#   there: bash tools/gpu_check.sh            (the device tool's run, with carry [".whl"])
# It runs (1) every notebook cell marked `#| cuda`, (2) a QLoRA training step on CUDA bitsandbytes (loss falls,
# gradients reach every adapter, 4-bit weights unchanged), (3) the memory estimator against
# torch.cuda.max_memory_allocated (target: within 10 %), (4) bench/bench_lora.py on CUDA in bf16. Figures go to
# $OUT (or _out/gpu) as gpu_check.json and bench_lora_cuda.txt, for bench/RESULTS.md.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-_out/gpu}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MPLBACKEND=Agg
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD || { echo "could not install the carried wheels"; exit 1; }
else export PYTHONPATH=$PWD; fi
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.__version__, torch.cuda.get_device_name())" || exit 1
fails=0; passes=0
step() { local name=$1; shift; local t0=$SECONDS
  if timeout "${STEP_LIMIT:-240}" "$@" > "$OUT/$name.log" 2>&1; then echo "PASS $name ($((SECONDS - t0)) s)"; passes=$((passes + 1))
  else echo "FAIL $name ($((SECONDS - t0)) s)"; tail -30 "$OUT/$name.log"; fails=$((fails + 1)); fi; }

# (1) the cells marked `#| cuda`, each notebook's cells run in order up to and including them (nbdev's flag)
step cuda_cells python3 - <<'PY'
import json, pathlib, subprocess, sys
nbs = [p for p in sorted(pathlib.Path("nbs").rglob("*.ipynb")) if "#| cuda" in p.read_text()]
print("notebooks with #| cuda cells:", [str(p) for p in nbs] or "none")
for p in nbs:
    r = subprocess.run(["nbdev_test", "--path", str(p), "--flags", "cuda"], capture_output=True, text=True)
    print(p, "ok" if r.returncode == 0 else "FAILED\n" + r.stdout[-3000:] + r.stderr[-3000:])
    if r.returncode: sys.exit(1)
PY

# (2) + (3): QLoRA on CUDA bitsandbytes, and the estimator against the allocator
step qlora_and_memory python3 - "$OUT" <<'PY'
import json, sys, torch
from transformers import LlamaConfig, LlamaForCausalLM, BitsAndBytesConfig
import tempfile
from peftlab import LoraConfig, get_peft_model, prepare_model_for_kbit_training, estimate_memory
out = {}
cfg = LlamaConfig(num_hidden_layers=4, hidden_size=512, intermediate_size=1376, num_attention_heads=8,
                  num_key_value_heads=4, vocab_size=8000)
d = tempfile.mkdtemp(); torch.manual_seed(0); LlamaForCausalLM(cfg).save_pretrained(d)
qc = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                        bnb_4bit_compute_dtype=torch.bfloat16)
m = LlamaForCausalLM.from_pretrained(d, quantization_config=qc, device_map="cuda", dtype=torch.bfloat16)
m = prepare_model_for_kbit_training(m, use_gradient_checkpointing=False)
pm = get_peft_model(m, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear"))
w4 = {n: p.detach().clone() for n, p in pm.named_parameters() if p.__class__.__name__ == "Params4bit"}
opt = torch.optim.AdamW([p for p in pm.parameters() if p.requires_grad], lr=2e-3)
ids = torch.randint(0, 8000, (8, 256), device="cuda"); losses = []
pm.train()
for step in range(10):
    loss = pm(input_ids=ids, labels=ids).loss; loss.backward()
    if step == 0:
        missing = [n for n, p in pm.named_parameters() if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0)]
        assert not missing, f"no gradient for {missing[:3]}"
    opt.step(); opt.zero_grad(); losses.append(loss.item())
assert losses[-1] < losses[0], losses
assert all(torch.equal(w4[n], p) for n, p in pm.named_parameters() if n in w4), "4-bit weights changed"
out["qlora_losses"] = [round(l, 4) for l in losses]
print("QLoRA on CUDA: loss", losses[0], "->", losses[-1])
# estimator vs allocator: a fresh bf16 model with LoRA, one training step, peak measured by the CUDA allocator
del pm, m, opt; torch.cuda.empty_cache()
rows = []
for bs, seq, ckpt in [(4, 512, False), (8, 512, True), (2, 1024, False)]:
    torch.manual_seed(0)
    base = LlamaForCausalLM(cfg).to("cuda", torch.bfloat16)
    lcfg = LoraConfig(r=16, target_modules="all-linear")
    est = estimate_memory(base, lcfg, batch_size=bs, seq_len=seq, gradient_checkpointing=ckpt)
    pm = get_peft_model(base, lcfg)
    if ckpt: pm.gradient_checkpointing_enable()
    opt = torch.optim.AdamW([p for p in pm.parameters() if p.requires_grad], lr=1e-4)
    x = torch.randint(0, 8000, (bs, seq), device="cuda")
    pm(input_ids=x, labels=x).loss.backward(); opt.step(); opt.zero_grad()   # optimizer states exist from here on
    torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
    pm(input_ids=x, labels=x).loss.backward(); opt.step(); opt.zero_grad(); torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    rows.append(dict(batch=bs, seq=seq, checkpointing=ckpt, estimated=est.total_bytes, measured=peak,
                     ratio=round(est.total_bytes / peak, 3)))
    print(rows[-1])
    del pm, base, opt, x; torch.cuda.empty_cache()
out["memory_calibration"] = rows
json.dump(out, open(f"{sys.argv[1]}/gpu_check.json", "w"), indent=1)
bad = [r for r in rows if not 0.9 <= r["ratio"] <= 1.1]
assert not bad, f"estimate off by more than 10 %: {bad}"
PY

# (4) the LoRA step benchmark on CUDA in bf16 (peftlab / PEFT / frozen base, same run)
STEP_LIMIT=300 step bench_lora_cuda env PEFTLAB_BENCH_DEVICE=cuda PEFTLAB_BENCH_DTYPE=bfloat16 python3 bench/bench_lora.py
cp "$OUT/bench_lora_cuda.log" "$OUT/bench_lora_cuda.txt" 2>/dev/null
echo "$passes passed, $fails failed"
[ "$fails" = 0 ]
