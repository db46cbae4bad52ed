#!/usr/bin/env python
"""QLoRA on CPU: measured training-step memory of a 4-bit NF4 model against full precision, and training-step time
of peftlab against Hugging Face PEFT on the same 4-bit base.

Model: a Llama shape built from a config (random weights, no download): LlamaConfig(num_hidden_layers=4,
hidden_size=512, intermediate_size=1376, num_attention_heads=8, num_key_value_heads=4, vocab_size=8000,
max_position_embeddings=128), untied lm_head, float32. It is saved once to a temporary folder; the 4-bit copies are
loaded from there with transformers' BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=float32), device_map="cpu" (bitsandbytes' CPU kernels):
every linear layer of the decoder becomes bnb.nn.Linear4bit; embeddings, norms and lm_head stay float32. Loading
twice from the same file gives bit-identical packed weights.

LoRA: r=8, lora_alpha=16, lora_dropout=0.05, task_type CAUSAL_LM, targets q_proj, v_proj ("default") and, unless
--no-all-linear, "all-linear". No prepare_model_for_kbit_training and no gradient checkpointing, in every model,
so that memory and time compare the weights' format alone.

1. Memory: for each of peftlab LoRA on the float32 model, peftlab QLoRA on the 4-bit model, PEFT QLoRA on the
   4-bit model (built one at a time, the others freed): peftlab.memory.measure_training_step(model,
   batch_size=BATCH, seq_len=SEQ) = the peak bytes held by tensors during one AdamW training step after a warm-up
   step (weights + adapter + gradients + optimizer states + activations), and the weight bytes of
   peftlab.analysis.param_breakdown (4-bit weights: packed bytes + quantization statistics).
2. Step time, as in bench/bench_lora.py (its helpers `interleaved`, `summarize`, `paired` are reused): contenders
   peftlab-4bit, peft-4bit, peftlab-fp32 (the same LoRA on the float model, for the cost of 4 bits), and QDoRA:
   peftlab-4bit-dora and peft-4bit-dora (the same config with use_dora=True on the 4-bit model; the norms go
   through the dequantized weight every step), timed round robin after warmup; one step = forward with labels,
   backward, AdamW(lr=1e-3).step(), zero_grad. PEFT's adapter weights are copied from peftlab's and the RNG is
   re-seeded before each step, so peftlab and PEFT must give identical losses (checked, LoRA and DoRA).

Usage: python bench/bench_qlora.py [--quick] [--repeats N] [--warmup N] [--no-all-linear] [--threads N] [--out PATH]
Writes every sample to bench/results_qlora.json unless --out says otherwise.
"""
import argparse, copy, gc, json, os, platform, statistics, sys, tempfile, time, warnings
from pathlib import Path

import torch
import transformers
import peft
import peftlab
import peftlab.quant  # registers the LoRA layers for bitsandbytes' 4-bit / 8-bit linears
from peftlab.analysis import param_breakdown
from peftlab.memory import measure_training_step

sys.path.insert(0, str(Path(__file__).parent))
from bench_lora import interleaved, summarize, paired  # noqa: E402

VOCAB, SEQ, BATCH, LAYERS, HIDDEN = 8000, 128, 4, 4, 512
LORA = dict(r=8, lora_alpha=16, lora_dropout=0.05, task_type="CAUSAL_LM")


def save_base(folder: Path, seed: int = 0) -> Path:
    cfg = transformers.LlamaConfig(num_hidden_layers=LAYERS, hidden_size=HIDDEN, intermediate_size=1376,
                                   num_attention_heads=8, num_key_value_heads=4, vocab_size=VOCAB,
                                   max_position_embeddings=SEQ, bos_token_id=0, eos_token_id=0, pad_token_id=None)
    torch.manual_seed(seed)
    m = transformers.AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa", dtype=torch.float32)
    m.save_pretrained(folder)
    return folder


def load(folder: Path, bits: int):
    kw = dict(dtype=torch.float32, attn_implementation="sdpa", device_map="cpu")
    if bits == 4:
        kw["quantization_config"] = transformers.BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.float32)
    return transformers.AutoModelForCausalLM.from_pretrained(folder, **kw)


def lora_kwargs(targets): return dict(LORA, target_modules=["q_proj", "v_proj"] if targets == "default" else "all-linear")


def build(folder, who, targets):
    "who: 'peftlab-fp32', 'peftlab-4bit', 'peft-4bit', 'peftlab-4bit-dora' or 'peft-4bit-dora'."
    base = load(folder, 32 if who.endswith("fp32") else 4)
    torch.manual_seed(1)
    kw = dict(lora_kwargs(targets), use_dora=who.endswith("dora"))
    if who.startswith("peftlab"): return peftlab.get_peft_model(base, peftlab.LoraConfig(**kw))
    return peft.get_peft_model(base, peft.LoraConfig(**kw))


def copy_lora(src, dst):
    fix = lambda k: k + ".weight" if k.endswith("lora_magnitude_vector.default") else k   # PEFT's DoRA key
    s = {fix(k): v for k, v in src.state_dict().items() if "lora_" in k}
    d = dst.state_dict()
    missing = [k for k in s if k not in d]
    if missing or sum("lora_" in k for k in d) != len(s):
        raise RuntimeError(f"LoRA parameter names differ between peftlab and PEFT: {missing[:5]}")
    with torch.no_grad():
        for k, v in s.items(): d[k].copy_(v)


def trainable(model): return [p for p in model.parameters() if p.requires_grad]


def make_train_step(model, ids):
    opt = torch.optim.AdamW(trainable(model), lr=1e-3)
    def step():
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
        return loss.detach()
    return step


def memory_rows(folder, targets):
    rows = []
    for who in ("peftlab-fp32", "peftlab-4bit", "peft-4bit"):
        gc.collect()
        m = build(folder, who, targets)
        df = param_breakdown(m) if who in ("peftlab-fp32", "peftlab-4bit") else None
        n4 = sum(type(x).__name__ == "Linear4bit" and not hasattr(x, "lora_A") for x in m.modules())
        mm = measure_training_step(m, batch_size=BATCH, seq_len=SEQ)
        rows.append(dict(targets=targets, model=who, bnb_linear4bit=n4, peak_mib=mm.peak_bytes / 2**20,
                         baseline_mib=mm.baseline_bytes / 2**20, step_increase_mib=mm.increase_bytes / 2**20,
                         weight_mib=None if df is None else df["bytes"].sum() / 2**20,
                         trainable=sum(p.numel() for p in trainable(m))))
        del m, mm; gc.collect()
    return rows


def time_case(folder, targets, warmup, repeats, ids):
    models = {w: build(folder, w, targets) for w in ("peftlab-4bit", "peft-4bit", "peftlab-fp32", "peftlab-4bit-dora",
                                                      "peft-4bit-dora")}
    for w in ("peft-4bit", "peftlab-fp32"): copy_lora(models["peftlab-4bit"], models[w])
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():   # a non-zero direction update, so DoRA's rescaling really happens
        for n, p in models["peftlab-4bit-dora"].named_parameters():
            if "lora_B" in n: p.normal_(0, 0.02, generator=g)
    copy_lora(models["peftlab-4bit-dora"], models["peft-4bit-dora"])
    lay = {n: sorted({type(x).__module__.split(".")[0] + "." + type(x).__name__ for x in m.modules() if hasattr(x, "lora_A")})
           for n, m in models.items()}
    for m in models.values(): m.train()
    steps = {n: make_train_step(m, ids) for n, m in models.items()}
    times, losses = interleaved(steps, warmup, repeats)
    a, b = torch.stack(losses["peftlab-4bit"]), torch.stack(losses["peft-4bit"])
    rows = [dict(targets=targets, clock=c, contender=n, **summarize(t)) for c, tc in times.items() for n, t in tc.items()]
    check = dict(targets=targets, lora_layer_types=lay, max_abs_loss_diff_peftlab_vs_peft=(a - b).abs().max().item(),
                 max_abs_loss_diff_dora_peftlab_vs_peft=(torch.stack(losses["peftlab-4bit-dora"])
                                                         - torch.stack(losses["peft-4bit-dora"])).abs().max().item(),
                 max_abs_loss_diff_4bit_vs_fp32=(a - torch.stack(losses["peftlab-fp32"])).abs().max().item(),
                 first_loss=a[0].item(), last_loss=a[-1].item())
    del models, steps; gc.collect()
    return rows, check


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: few repeats, default targets only")
    ap.add_argument("--repeats", type=int, default=None, help="timed rounds (default 15, quick 3)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed warmup rounds (default 3, quick 1)")
    ap.add_argument("--no-all-linear", action="store_true")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    ap.add_argument("--out", default=str(Path(__file__).with_name("results_qlora.json")))
    a = ap.parse_args(argv)
    warmup = a.warmup if a.warmup is not None else (1 if a.quick else 3)
    repeats = a.repeats if a.repeats is not None else (3 if a.quick else 15)
    variants = ["default"] + ([] if (a.quick or a.no_all_linear) else ["all-linear"])
    if a.threads: torch.set_num_threads(a.threads)
    transformers.logging.set_verbosity_error(); transformers.logging.disable_progress_bar()
    warnings.filterwarnings("ignore")
    import bitsandbytes as bnb
    env = dict(python=platform.python_version(), torch=torch.__version__, transformers=transformers.__version__,
               peft=peft.__version__, peftlab=peftlab.__version__, bitsandbytes=bnb.__version__,
               threads=torch.get_num_threads(), cpu_count=os.cpu_count(),
               loadavg_start=[float(v) for v in open("/proc/loadavg").read().split()[:3]])
    print(env)
    print(f"Llama shape: {LAYERS} layers, hidden {HIDDEN}, vocab {VOCAB}; batch {BATCH}x{SEQ}; LoRA {LORA}; "
          f"warmup {warmup}, repeats {repeats}")
    ids = torch.randint(0, VOCAB, (BATCH, SEQ), generator=torch.Generator().manual_seed(0))
    t_start = time.perf_counter()
    mem, rows, checks = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        folder = save_base(Path(tmp) / "llama")
        for targets in variants:
            mem += memory_rows(folder, targets)
            r, c = time_case(folder, targets, warmup, repeats, ids)
            rows += r; checks.append(c)
            print(f"  {targets}: {c}")
    env["loadavg_end"] = [float(v) for v in open("/proc/loadavg").read().split()[:3]]
    total = time.perf_counter() - t_start

    print("\nmeasured memory of one training step (measure_training_step), MiB:")
    print("| targets | model | Linear4bit layers | trainable | weights (param_breakdown) | peak | baseline | step increase |")
    print("|---|---|---|---|---|---|---|---|")
    for r in mem:
        w = "—" if r["weight_mib"] is None else f"{r['weight_mib']:.2f}"
        print(f"| {r['targets']} | {r['model']} | {r['bnb_linear4bit']} | {r['trainable']:,} | {w} | {r['peak_mib']:.2f} | "
              f"{r['baseline_mib']:.2f} | {r['step_increase_mib']:.2f} |")
    for t in variants:
        f32, q = [next(r for r in mem if r["targets"] == t and r["model"] == w) for w in ("peftlab-fp32", "peftlab-4bit")]
        print(f"  {t}: peak 4-bit / fp32 = {q['peak_mib'] / f32['peak_mib']:.3f}; weights 4-bit / fp32 = "
              f"{q['weight_mib'] / f32['weight_mib']:.3f}")

    print("\ntraining step time, median ms (wall / CPU) and paired ratios (median over rounds of the per-round ratio):")
    print("| targets | clock | peftlab 4-bit | PEFT 4-bit | peftlab fp32 | paired peftlab/PEFT (4-bit) | paired 4-bit/fp32 (peftlab) | peftlab QDoRA | PEFT QDoRA | paired QDoRA peftlab/PEFT |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for t in variants:
        for clock in ("wall", "cpu"):
            med = {r["contender"]: r for r in rows if r["targets"] == t and r["clock"] == clock}
            # `paired` from bench_lora keys rows by (phase, shape, targets, clock)
            pr = [dict(r, phase="train", shape="llama") for r in rows if r["targets"] == t and r["clock"] == clock]
            k = ("train", "llama", t, clock)
            print(f"| {t} | {clock} | {med['peftlab-4bit']['median_ms']:.1f} | {med['peft-4bit']['median_ms']:.1f} | "
                  f"{med['peftlab-fp32']['median_ms']:.1f} | {paired(pr, k, 'peftlab-4bit', 'peft-4bit'):.3f} | "
                  f"{paired(pr, k, 'peftlab-4bit', 'peftlab-fp32'):.3f} | {med['peftlab-4bit-dora']['median_ms']:.1f} | "
                  f"{med['peft-4bit-dora']['median_ms']:.1f} | {paired(pr, k, 'peftlab-4bit-dora', 'peft-4bit-dora'):.3f} |")
    print(f"\ntotal {total:.0f}s; load average start {env['loadavg_start']} end {env['loadavg_end']}")
    with open(a.out, "w") as f:
        json.dump(dict(env=env, memory=mem, checks=checks, samples=rows, total_s=total), f, indent=1)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
