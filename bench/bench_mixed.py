#!/usr/bin/env python
"""Benchmark a mixed-adapter batch: every row of the batch through its own LoRA adapter (`adapter_names=[...]`).

Model: bench_lora's Llama shape built from a config (4 layers, hidden 256, vocab 8000, random weights, no download).
Adapters: 8 LoRA adapters, r=8, lora_alpha=16, on q_proj, k_proj, v_proj, o_proj, with random (non-zero) weights,
identical in peftlab and PEFT (copied). A batch of 16 rows; row i uses adapter i % 8.

Contenders, timed interleaved round robin after warm-up, in eval() mode under torch.no_grad():

1. peftlab       : `model(input_ids, adapter_names=names)`: one batched operator per layer (stacked A and B).
2. peftlab-loop  : the same model through the general per-adapter loop (`AdapterLayer._mixed_batch_forward`),
                   which is what the batched operator replaces.
3. peft          : PEFT's `model(input_ids, adapter_names=names)` (a loop over adapters in every layer).
4. base          : the model without adapters, the floor.

Phases: `forward` (16 rows x 32 tokens) and `generate` (16 rows, 16-token prompts, 8 new tokens, greedy, KV cache).
The script checks that peftlab's logits equal PEFT's and each row's logits equal that row run alone with its adapter.

Usage: python bench/bench_mixed.py [--repeats N] [--warmup N] [--threads N] [--seq T] [--out PATH]
"""
import argparse, copy, json, os, platform, statistics, sys, time, warnings
from pathlib import Path

import torch
import transformers
import peft
import peftlab
from peftlab.core import AdapterLayer

sys.path.insert(0, str(Path(__file__).parent))
from bench_lora import build_base, interleaved, summarize   # the same shapes and timer

N_ADAPTERS, ROWS, PROMPT, NEW = 8, 16, 16, 8
LORA = dict(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
            task_type="CAUSAL_LM")


def make_models():
    base = build_base("llama")
    torch.manual_seed(1)
    lab = peftlab.get_peft_model(copy.deepcopy(base), peftlab.LoraConfig(**LORA, init_lora_weights=False), "a0")
    for i in range(1, N_ADAPTERS):
        lab.add_adapter(f"a{i}", peftlab.LoraConfig(**LORA, init_lora_weights=False))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pf = peft.get_peft_model(copy.deepcopy(base), peft.LoraConfig(**LORA), "a0")
        for i in range(1, N_ADAPTERS): pf.add_adapter(f"a{i}", peft.LoraConfig(**LORA))
    lab_sd, pf_sd = lab.state_dict(), pf.state_dict()
    lora = [k for k in lab_sd if "lora_" in k]
    if sorted(lora) != sorted(k for k in pf_sd if "lora_" in k):
        raise RuntimeError("LoRA parameter names differ between peftlab and PEFT")
    with torch.no_grad():
        for k in lora: pf_sd[k].copy_(lab_sd[k])
    for m in (lab, pf, base): m.eval()
    return base, lab, pf


class looped:
    "peftlab's LoRA Linear through the general per-adapter loop while inside the block."
    def __enter__(self):
        self.saved = peftlab.lora.Linear._mixed_batch_forward
        peftlab.lora.Linear._mixed_batch_forward = AdapterLayer._mixed_batch_forward
    def __exit__(self, *a): peftlab.lora.Linear._mixed_batch_forward = self.saved


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seq", type=int, default=32, help="tokens per row in the forward phase")
    ap.add_argument("--out", default=str(Path(__file__).with_name("results_mixed.json")))
    a = ap.parse_args(argv)
    if a.threads: torch.set_num_threads(a.threads)
    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore")
    base, lab, pf = make_models()
    names = [f"a{i % N_ADAPTERS}" for i in range(ROWS)]
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 8000, (ROWS, a.seq), generator=g)
    prompt = torch.randint(1, 8000, (ROWS, PROMPT), generator=g)

    with torch.no_grad():   # correctness first
        y_lab, y_pf = lab(input_ids=ids, adapter_names=names).logits, pf(input_ids=ids, adapter_names=names).logits
        with looped(): y_loop = lab(input_ids=ids, adapter_names=names).logits
        alone = []
        for i in (0, 5, 11):
            lab.set_adapter(names[i]); alone.append((lab(input_ids=ids[i:i + 1]).logits[0] - y_lab[i]).abs().max().item())
        lab.set_adapter("a0")
    checks = dict(max_abs_logit_diff_vs_peft=(y_lab - y_pf).abs().max().item(),
                  max_abs_logit_diff_vs_loop=(y_lab - y_loop).abs().max().item(),
                  max_abs_logit_diff_vs_row_alone=max(alone),
                  max_abs_logit=y_lab.abs().max().item())
    print("checks:", {k: f"{v:.2e}" for k, v in checks.items()})

    def fwd(m, loop=False):
        @torch.no_grad()
        def f():
            if loop:
                with looped(): return m(input_ids=ids, adapter_names=names).logits[:, -1].sum()
            return m(input_ids=ids, **({} if m is base else dict(adapter_names=names))).logits[:, -1].sum()
        return f

    def gen(m, loop=False):
        kw = dict(max_new_tokens=NEW, do_sample=False, pad_token_id=0)
        @torch.no_grad()
        def f():
            if loop:
                with looped(): return m.generate(input_ids=prompt, adapter_names=names, **kw).float().sum()
            return m.generate(input_ids=prompt, **({} if m is base else dict(adapter_names=names)), **kw).float().sum()
        return f

    rows = []
    t_all = time.perf_counter()
    for phase, mk in (("forward", fwd), ("generate", gen)):
        fns = {"peftlab": mk(lab), "peftlab-loop": mk(lab, True), "peft": mk(pf), "base": mk(base)}
        times, _ = interleaved(fns, a.warmup, a.repeats)
        for n, t in times["wall"].items(): rows.append(dict(phase=phase, contender=n, **summarize(t)))
    total = time.perf_counter() - t_all

    def ratio(phase, num, den):
        t = {r["contender"]: r["round_ms"] for r in rows if r["phase"] == phase}
        return statistics.median(x / y for x, y in zip(t[num], t[den]))
    print(f"\n{ROWS} rows over {N_ADAPTERS} LoRA adapters (r=8, q/k/v/o), Llama shape, {torch.get_num_threads()} "
          f"thread(s); median of {a.repeats} interleaved rounds, paired ratios; total {total:.0f}s")
    print("| phase | peftlab ms | loop ms | PEFT ms | base ms | peftlab/PEFT | peftlab/loop | peftlab/base | PEFT/base |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    table = []
    for phase in ("forward", "generate"):
        med = {r["contender"]: r["median_ms"] for r in rows if r["phase"] == phase}
        t = dict(phase=phase, **{f"{k}_ms": v for k, v in med.items()},
                 peftlab_over_peft=ratio(phase, "peftlab", "peft"), peftlab_over_loop=ratio(phase, "peftlab", "peftlab-loop"),
                 peftlab_over_base=ratio(phase, "peftlab", "base"), peft_over_base=ratio(phase, "peft", "base"))
        table.append(t)
        print(f"| {phase} ({ROWS}x{a.seq if phase == 'forward' else f'{PROMPT}+{NEW}'}) | {med['peftlab']:.1f} | "
              f"{med['peftlab-loop']:.1f} | {med['peft']:.1f} | {med['base']:.1f} | {t['peftlab_over_peft']:.3f} | "
              f"{t['peftlab_over_loop']:.3f} | {t['peftlab_over_base']:.3f} | {t['peft_over_base']:.3f} |")
    env = dict(torch=torch.__version__, transformers=transformers.__version__, peft=peft.__version__,
               python=platform.python_version(), threads=torch.get_num_threads(), loadavg=os.getloadavg())
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    json.dump(dict(env=env, checks=checks, table=table, samples=rows), open(a.out, "w"), indent=1)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
