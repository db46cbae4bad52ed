#!/usr/bin/env python
"""Benchmark one LoRA training step and merged-model inference: peftlab vs Hugging Face PEFT vs the frozen base.

Models are built from configs (random weights, no download): 4 layers, hidden 256, vocab 8000, batch 8 x 128 tokens.

* GPT-2 shape: GPT2Config(n_layer=4, n_embd=256, n_head=4, vocab_size=8000, n_positions=128), tied lm_head.
* Llama shape: LlamaConfig(num_hidden_layers=4, hidden_size=256, intermediate_size=688, num_attention_heads=4,
  num_key_value_heads=2, vocab_size=8000, max_position_embeddings=128), untied lm_head.

LoRA: r=8, lora_alpha=16, lora_dropout=0.05, task_type CAUSAL_LM; targets = the default ones (GPT-2: c_attn,
Llama: q_proj, v_proj) and, unless --no-all-linear, "all-linear" (every linear layer but lm_head).

Contenders, timed interleaved (round robin peftlab, peft, base, peftlab, peft, base, ...) after warmup; the
reported figure is the median of the repeats:

1. peftlab  : peftlab.get_peft_model(copy_of_base, peftlab.LoraConfig(...)), train() mode.
2. peft     : peft.get_peft_model(copy_of_base, peft.LoraConfig(...)), train() mode, LoRA weights copied from (1)
              so both start from identical weights (base weights are identical by construction: deep copies).
3. base     : copy_of_base with every parameter frozen (requires_grad=False), train() mode, and
              `model.enable_input_require_grads()` (a forward hook that sets requires_grad on the input
              embeddings' output), so loss.backward() runs back through the whole network computing activation
              gradients but no weight gradient. No optimizer step (there is nothing to train).

Training step (timed as a whole): loss = model(input_ids=ids, labels=ids).loss; loss.backward();
AdamW(lr=1e-3, trainable params).step(); zero_grad(set_to_none=True). Dropout is active (train mode) in all
three. The RNG is re-seeded (outside the timed region) before every step with the same seed for all
contenders. peftlab's fused LoRA step draws its own dropout masks (16-bit draws, equal in expectation), so with
dropout the losses of peftlab and PEFT agree in distribution, not bit for bit; with --dropout 0 they must be equal
up to float rounding, and the script prints the largest difference.

Inference: after training, peftlab's and PEFT's models are merge_and_unload()-ed; these and a fresh copy of
the base model run forward(input_ids) in eval() mode under torch.no_grad(), interleaved the same way. The
merged logits of peftlab and PEFT are compared.

Usage: python bench/bench_lora.py [--quick] [--repeats N] [--warmup N] [--inf-repeats N] [--no-all-linear]
       [--dropout P] [--dora] [--shapes gpt2,llama] [--threads N] [--compile] [--out PATH]
--compile: the three training steps run through torch.compile (inductor; the warm-up rounds compile).
--dora: the same with use_dora=True (DoRA's magnitude vector on every target) for both libraries.
Writes a JSON with every sample to bench/results_lora.json (gitignored) unless --out says otherwise.
"""
import argparse, copy, json, os, platform, statistics, sys, time, warnings
from pathlib import Path

import torch
import transformers
import peft
import peftlab

VOCAB, SEQ, BATCH, LAYERS, HIDDEN = 8000, 128, 8, 4, 256
LORA = dict(r=8, lora_alpha=16, lora_dropout=0.05, task_type="CAUSAL_LM")
CONTENDERS = ("peftlab", "peft", "base")
COMPILE = False   # --compile
# tools/gpu_check.sh runs this on CUDA in bf16; the default is the CPU in float32
DEVICE = os.environ.get("PEFTLAB_BENCH_DEVICE", "cpu")
DTYPE = getattr(torch, os.environ.get("PEFTLAB_BENCH_DTYPE", "float32"))


def build_base(shape: str, seed: int = 0) -> torch.nn.Module:
    "A randomly initialised causal LM of the given shape (identical weights for the same seed)."
    T = transformers
    if shape == "gpt2":
        cfg = T.GPT2Config(n_layer=LAYERS, n_embd=HIDDEN, n_head=4, vocab_size=VOCAB, n_positions=SEQ,
                           bos_token_id=0, eos_token_id=0)
    elif shape == "llama":
        cfg = T.LlamaConfig(num_hidden_layers=LAYERS, hidden_size=HIDDEN, intermediate_size=688,
                            num_attention_heads=4, num_key_value_heads=2, vocab_size=VOCAB,
                            max_position_embeddings=SEQ, bos_token_id=0, eos_token_id=0, pad_token_id=None)
    else: raise ValueError(shape)
    torch.manual_seed(seed)
    return T.AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa", dtype=DTYPE).to(DEVICE)


def lora_kwargs(targets: str) -> dict:
    return dict(LORA, target_modules=None if targets == "default" else "all-linear")


def make_models(shape: str, targets: str):
    "The three training contenders, on identical base weights; LoRA weights of PEFT copied from peftlab."
    base = build_base(shape)
    torch.manual_seed(1)
    m_lab = peftlab.get_peft_model(copy.deepcopy(base), peftlab.LoraConfig(**lora_kwargs(targets)))
    torch.manual_seed(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fan_in_fan_out notice for GPT-2's Conv1D
        m_peft = peft.get_peft_model(copy.deepcopy(base), peft.LoraConfig(**lora_kwargs(targets)))
    # identical LoRA starting point: copy peftlab's adapter weights into PEFT's model (same parameter names)
    peft_sd = m_peft.state_dict()
    # DoRA's magnitude: peftlab holds a parameter (`...lora_magnitude_vector.default`), PEFT a module with a weight
    lab_sd = {(k if k in peft_sd else k + ".weight"): v for k, v in m_lab.state_dict().items() if "lora_" in k}
    missing = [k for k in lab_sd if k not in peft_sd]
    n_peft = sum("lora_" in k for k in peft_sd)
    if missing or n_peft != len(lab_sd):
        raise RuntimeError(f"LoRA parameter names differ between peftlab and PEFT: {missing[:5]} "
                           f"({len(lab_sd)} vs {n_peft})")
    with torch.no_grad():
        for k, v in lab_sd.items(): peft_sd[k].copy_(v)
    m_base = copy.deepcopy(base)
    m_base.requires_grad_(False)
    m_base.enable_input_require_grads()
    for m in (m_lab, m_peft, m_base): m.train()
    return base, {"peftlab": m_lab, "peft": m_peft, "base": m_base}


def trainable(model): return [p for p in model.parameters() if p.requires_grad]


def make_train_step(model, ids):
    params = trainable(model)
    opt = torch.optim.AdamW(params, lr=1e-3) if params else None
    def step():
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        if opt is not None:
            opt.step()
            opt.zero_grad(set_to_none=True)
        return loss.detach()
    return step


def make_infer_step(model, ids):
    model.eval()
    @torch.no_grad()
    def step(): return model(input_ids=ids).logits
    return step


def interleaved(fns: dict, warmup: int, repeats: int, seed0: int = 1000):
    """Round-robin timing: for each round, every contender runs once, in the order of `fns`.
    The global RNG is re-seeded before each call (untimed) with the round's seed, the same for all contenders.
    Returns {clock: {name: [seconds...]}} for clock "wall" (time.perf_counter) and "cpu" (time.process_time,
    CPU time of this process, all its threads), and {name: [return values]}: every call's for scalars (losses),
    only the last call's for larger tensors (logits), so that memory stays flat."""
    times = {"wall": {n: [] for n in fns}, "cpu": {n: [] for n in fns}}
    outs = {n: [] for n in fns}
    for i in range(warmup + repeats):
        for n, fn in fns.items():
            torch.manual_seed(seed0 + i)
            c0, t0 = time.process_time(), time.perf_counter()
            r = fn()
            if DEVICE != "cpu": torch.cuda.synchronize()
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            if i >= warmup:
                times["wall"][n].append(dt)
                times["cpu"][n].append(dc)
            if r.numel() == 1: outs[n].append(r)
            else: outs[n] = [r]
    return times, outs


def summarize(samples):
    ms = sorted(s * 1e3 for s in samples)
    q = statistics.quantiles(ms, n=4) if len(ms) >= 2 else [ms[0]] * 3
    return dict(median_ms=statistics.median(ms), p25_ms=q[0], p75_ms=q[2], min_ms=ms[0], n=len(ms),
                round_ms=[round(s * 1e3, 3) for s in samples])  # in round order (for paired ratios)


def run_case(shape, targets, warmup, repeats, inf_repeats, ids):
    base, models = make_models(shape, targets)
    n_train = {n: sum(p.numel() for p in trainable(m)) for n, m in models.items()}
    if COMPILE:   # the training step of each contender through torch.compile (inductor); warm-up rounds compile
        steps = {n: make_train_step(torch.compile(m), ids) for n, m in models.items()}
    else: steps = None
    n_lora_layers = {"peftlab": sum(isinstance(m, peftlab.lora.LoraLayer) for m in models["peftlab"].modules()),
                     "peft": sum(isinstance(m, peft.tuners.lora.LoraLayer) for m in models["peft"].modules())}
    steps = steps or {n: make_train_step(m, ids) for n, m in models.items()}
    times, losses = interleaved(steps, warmup, repeats)
    lab_l, peft_l = torch.stack(losses["peftlab"]), torch.stack(losses["peft"])
    loss_diff = (lab_l - peft_l).abs().max().item()
    rows = [dict(phase="train", shape=shape, targets=targets, clock=c, contender=n, trainable_params=n_train[n],
                 **summarize(t)) for c, tc in times.items() for n, t in tc.items()]

    # merged inference
    merged = {"peftlab": models["peftlab"].merge_and_unload(), "peft": models["peft"].merge_and_unload(),
              "base": copy.deepcopy(base)}
    hook_left = bool(getattr(merged["peftlab"], "_require_grads_hooks", None))
    plain = {n: not any("lora" in type(m).__name__.lower() for m in mm.modules()) for n, mm in merged.items()}
    inf = {n: make_infer_step(m, ids) for n, m in merged.items()}
    itimes, logits = interleaved(inf, max(2, warmup // 2), inf_repeats)
    logit_diff = (logits["peftlab"][-1] - logits["peft"][-1]).abs().max().item()
    rows += [dict(phase="infer_merged", shape=shape, targets=targets, clock=c, contender=n, **summarize(t))
             for c, tc in itimes.items() for n, t in tc.items()]
    checks = dict(shape=shape, targets=targets, lora_layers=n_lora_layers,
                  max_abs_loss_diff_peftlab_vs_peft=loss_diff, first_loss=lab_l[0].item(), last_loss=lab_l[-1].item(),
                  max_abs_merged_logit_diff_peftlab_vs_peft=logit_diff,
                  merged_models_plain=plain, peftlab_merged_keeps_input_grad_hook=hook_left)
    return rows, checks


def paired(rows, k, num, den):
    "Median over rounds of time[num]/time[den] within the same round (robust to slow drifts in machine load)."
    t = {r["contender"]: r["round_ms"] for r in rows if (r["phase"], r["shape"], r["targets"], r["clock"]) == k}
    return statistics.median(a / b for a, b in zip(t[num], t[den]))


def table(rows):
    "One line per (phase, shape, targets): median ms of each contender and the ratios."
    out = []
    keys = []
    for r in rows:
        k = (r["phase"], r["shape"], r["targets"], r["clock"])
        if k not in keys: keys.append(k)
    for k in keys:
        med = {r["contender"]: r for r in rows if (r["phase"], r["shape"], r["targets"], r["clock"]) == k}
        lab, pf, b = (med[c]["median_ms"] for c in CONTENDERS)
        out.append(dict(phase=k[0], shape=k[1], targets=k[2], clock=k[3], peftlab_ms=lab, peft_ms=pf, base_ms=b,
                        peftlab_over_peft=lab / pf, peftlab_over_base=lab / b, peft_over_base=pf / b,
                        paired_peftlab_over_peft=paired(rows, k, "peftlab", "peft"),
                        paired_peftlab_over_base=paired(rows, k, "peftlab", "base"),
                        paired_peft_over_base=paired(rows, k, "peft", "base"),
                        min_peftlab_ms=med["peftlab"]["min_ms"], min_peft_ms=med["peft"]["min_ms"],
                        min_base_ms=med["base"]["min_ms"],
                        iqr_peftlab=med["peftlab"]["p75_ms"] - med["peftlab"]["p25_ms"],
                        iqr_peft=med["peft"]["p75_ms"] - med["peft"]["p25_ms"],
                        iqr_base=med["base"]["p75_ms"] - med["base"]["p25_ms"]))
    return out


def fmt_table(trows, clock="wall"):
    trows = [t for t in trows if t["clock"] == clock]
    hdr = ("phase", "shape", "targets", "peftlab ms", "PEFT ms", "base ms", "peftlab/PEFT", "peftlab/base",
           "PEFT/base", "paired lab/PEFT", "paired lab/base")
    lines = [hdr]
    for t in trows:
        lines.append((t["phase"], t["shape"], t["targets"], f"{t['peftlab_ms']:.1f}", f"{t['peft_ms']:.1f}",
                      f"{t['base_ms']:.1f}", f"{t['peftlab_over_peft']:.3f}", f"{t['peftlab_over_base']:.3f}",
                      f"{t['peft_over_base']:.3f}", f"{t['paired_peftlab_over_peft']:.3f}",
                      f"{t['paired_peftlab_over_base']:.3f}"))
    w = [max(len(l[i]) for l in lines) for i in range(len(hdr))]
    s = ["| " + " | ".join(c.ljust(w[i]) for i, c in enumerate(l)) + " |" for l in lines]
    s.insert(1, "|" + "|".join("-" * (x + 2) for x in w) + "|")
    return "\n".join(s)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: few repeats, default targets only")
    ap.add_argument("--repeats", type=int, default=None, help="timed training rounds (default 20, quick 4)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed warmup rounds (default 4, quick 1)")
    ap.add_argument("--inf-repeats", type=int, default=None, help="timed inference rounds (default 30, quick 4)")
    ap.add_argument("--no-all-linear", action="store_true", help="skip the all-linear target variant")
    ap.add_argument("--dropout", type=float, default=None, help="override lora_dropout (default 0.05)")
    ap.add_argument("--shapes", default="gpt2,llama")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    ap.add_argument("--dora", action="store_true", help="use_dora=True for peftlab and PEFT")
    ap.add_argument("--compile", action="store_true", help="time the training step of every contender under torch.compile")
    ap.add_argument("--out", default=str(Path(__file__).with_name("results_lora.json")))
    a = ap.parse_args(argv)
    global COMPILE
    COMPILE = a.compile
    warmup = a.warmup if a.warmup is not None else (1 if a.quick else 4)
    repeats = a.repeats if a.repeats is not None else (4 if a.quick else 20)
    inf_repeats = a.inf_repeats if a.inf_repeats is not None else (4 if a.quick else 30)
    if a.dropout is not None: LORA["lora_dropout"] = a.dropout
    if a.dora: LORA["use_dora"] = True
    variants = ["default"] + ([] if (a.quick or a.no_all_linear) else ["all-linear"])
    if a.threads: torch.set_num_threads(a.threads)
    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning)

    env = dict(python=platform.python_version(), torch=torch.__version__, transformers=transformers.__version__,
               peft=peft.__version__, peftlab=peftlab.__version__, threads=torch.get_num_threads(),
               interop_threads=torch.get_num_interop_threads(), cpu_count=os.cpu_count(),
               cpu=platform.processor() or platform.machine(), platform=platform.platform())
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"): env["cpu"] = line.split(":", 1)[1].strip(); break
    except OSError: pass
    protocol = dict(compiled=COMPILE, batch=BATCH, seq=SEQ, layers=LAYERS, hidden=HIDDEN, vocab=VOCAB, lora=LORA, variants=variants,
                    warmup=warmup, repeats=repeats, inf_repeats=inf_repeats, order=list(CONTENDERS),
                    optimizer="AdamW(lr=1e-3), zero_grad(set_to_none=True)", dtype=str(DTYPE).replace("torch.", ""), device=DEVICE)
    print(f"torch {env['torch']}  transformers {env['transformers']}  peft {env['peft']}  peftlab {env['peftlab']}  "
          f"threads {env['threads']} (interop {env['interop_threads']}, cpus {env['cpu_count']})  cpu: {env['cpu']}")
    print(f"batch {BATCH}x{SEQ}, {LAYERS} layers, hidden {HIDDEN}, vocab {VOCAB}; LoRA {LORA}; "
          f"warmup {warmup}, repeats {repeats} (train) / {inf_repeats} (inference); interleaved {CONTENDERS}")

    def loadavg():
        try: return [float(v) for v in open("/proc/loadavg").read().split()[:3]]
        except (OSError, ValueError): return None
    env["loadavg_start"] = loadavg()
    if env["loadavg_start"] and env["loadavg_start"][0] > 0.5 * (os.cpu_count() or 1):
        print(f"WARNING: 1-min load average {env['loadavg_start'][0]} on {os.cpu_count()} cpus: other processes "
              f"compete for the CPU; absolute times will be noisy (the paired ratios are more robust).")
    ids = torch.randint(0, VOCAB, (BATCH, SEQ), generator=torch.Generator().manual_seed(0)).to(DEVICE)
    rows, checks = [], []
    t_start = time.perf_counter()
    for shape in a.shapes.split(","):
        for targets in variants:
            t0 = time.perf_counter()
            r, c = run_case(shape, targets, warmup, repeats, inf_repeats, ids)
            rows += r; checks.append(c)
            print(f"  {shape:5s} {targets:10s} done in {time.perf_counter() - t0:5.1f}s; "
                  f"LoRA layers {c['lora_layers']}; |loss peftlab - PEFT| max {c['max_abs_loss_diff_peftlab_vs_peft']:.2e}; "
                  f"|merged logits peftlab - PEFT| max {c['max_abs_merged_logit_diff_peftlab_vs_peft']:.2e}")
    total = time.perf_counter() - t_start
    env["loadavg_end"] = loadavg()
    trows = table(rows)
    print("\nwall-clock time (time.perf_counter), median ms:")
    print(fmt_table(trows, "wall"))
    print("\nCPU time of the process (time.process_time, all threads), median ms:")
    print(fmt_table(trows, "cpu"))
    print(f"\nmedian of {repeats} (train) / {inf_repeats} (inference) interleaved rounds; 'paired' = median over "
          f"rounds of the per-round ratio; total {total:.0f}s; load average start {env['loadavg_start']} "
          f"end {env['loadavg_end']}")
    # targets: peftlab/PEFT <= 0.90 with all linear layers, <= 0.97 on the default targets; peftlab/base <= 1.15 on
    # all linear layers without dropout
    for t in trows:
        if t["phase"] == "train" and t["clock"] == "wall":
            all_lin = t["targets"] == "all-linear"
            goal_peft = 0.90 if all_lin else 0.97
            r_peft, r_base = t["paired_peftlab_over_peft"], t["paired_peftlab_over_base"]
            line = (f"  {t['shape']:5s} {t['targets']:10s} dropout {LORA['lora_dropout']}: peftlab/PEFT {r_peft:.3f} "
                    f"(target <= {goal_peft}: {'yes' if r_peft <= goal_peft else 'NO'});  peftlab/base {r_base:.3f}")
            if all_lin and LORA["lora_dropout"] == 0:
                line += f" (target <= 1.15: {'yes' if r_base <= 1.15 else 'NO'})"
            print(line + "   [paired ratios]")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(dict(env=env, protocol=protocol, total_s=total, table=trows, checks=checks, samples=rows), f, indent=1)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
