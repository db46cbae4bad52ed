#!/usr/bin/env python
"""Training-step ratios for AdaLoRA, (IA)³, prefix tuning and DoRA: peftlab vs Hugging Face PEFT vs the frozen base.

Same protocol as bench_lora.py (whose model builders and interleaved timer it reuses): 4 layers, hidden 256,
vocab 8000, batch 8 x 128 tokens, GPT-2 and Llama shapes built from configs; contenders timed round-robin after
warmup, medians and paired per-round ratios reported. Method settings:

* AdaLoRA: init_r=12, target_r=8, tinit=0, tfinal=0, total_step=1000, deltaT=1, lora_alpha=16, dropout 0.05,
  default targets, task_type CAUSAL_LM (so PEFT adds the orthogonality regulariser too); the timed step includes
  `update_and_allocate(step)` between optimizer.step() and zero_grad(), as PEFT documents.
* (IA)³: default targets and feed-forward modules.
* DoRA: LoRA r=8, lora_alpha=16, dropout 0.05, default targets, use_dora=True; B starts random (N(0, 0.02²))
  so that both libraries compute a real direction update.
* Prefix tuning: 20 virtual tokens, no projection; sequences cut to 128 - 20 = 108 tokens so that prefix plus
  input fit GPT-2's 128 learned positions (the base model runs the same 108 tokens).

The adapter weights of PEFT's model are copied from peftlab's (matching tensors by name suffix) so both compute the
same losses; the script checks that. "base" is the frozen model with input-embedding grads on (backward runs
through the network, no weight gradient, no optimizer step), as in bench_lora.py.

Usage: python bench/bench_methods.py [--quick] [--repeats N] [--warmup N] [--methods adalora,ia3,prefix,dora]
       [--shapes gpt2,llama] [--out PATH]
"""
import argparse, copy, json, statistics, sys, time, warnings
from pathlib import Path
import torch, transformers, peft, peftlab
sys.path.insert(0, str(Path(__file__).parent))
from bench_lora import build_base, interleaved, summarize, trainable, BATCH, SEQ, VOCAB

def configs(method: str, lib):
    if method == "adalora":
        return lib.AdaLoraConfig(init_r=12, target_r=8, total_step=1000, lora_alpha=16, lora_dropout=0.05,
                                 task_type="CAUSAL_LM")
    if method == "ia3": return lib.IA3Config(task_type="CAUSAL_LM")
    if method == "prefix": return lib.PrefixTuningConfig(num_virtual_tokens=20, task_type="CAUSAL_LM")
    if method == "dora": return lib.LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, use_dora=True, task_type="CAUSAL_LM")
    raise ValueError(method)

def copy_adapter(src, dst):
    "Copy trainable tensors of `src` into `dst`, matching names by their longest common suffix."
    s = {k: p for k, p in src.named_parameters() if p.requires_grad}
    d = {k: p for k, p in dst.named_parameters() if p.requires_grad}
    norm = lambda k: k.replace("base_model.model.", "").replace("base_model.", "").removesuffix(".weight") \
        if "lora_magnitude_vector" in k else k.replace("base_model.model.", "").replace("base_model.", "")
    dn = {norm(k): p for k, p in d.items()}
    if len(s) != len(d): raise RuntimeError(f"{len(s)} vs {len(d)} trainable tensors")
    with torch.no_grad():
        for k, p in s.items(): dn[norm(k)].copy_(p)

def train_step(model, ids, adalora: bool):
    opt = torch.optim.AdamW(trainable(model), lr=1e-3) if trainable(model) else None
    state = {"step": 0}
    def step():
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        if opt is not None:
            opt.step()
            if adalora: model.base_model.update_and_allocate(state["step"])
            opt.zero_grad(set_to_none=True)
        state["step"] += 1
        return loss.detach()
    return step

def run(method, shape, warmup, repeats, ids):
    base = build_base(shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(1); lab = peftlab.get_peft_model(copy.deepcopy(base), configs(method, peftlab))
        torch.manual_seed(1); pf = peft.get_peft_model(copy.deepcopy(base), configs(method, peft))
    if method == "ia3":  # start away from the identity so both libraries really compute something
        with torch.no_grad():
            for p in trainable(lab): p.uniform_(0.8, 1.2)
    if method == "dora":  # a non-zero B, so the direction update is really computed
        with torch.no_grad():
            for n, p in lab.named_parameters():
                if "lora_B" in n: p.normal_(0, 0.02)
    copy_adapter(lab, pf)
    frozen = copy.deepcopy(base).requires_grad_(False); frozen.enable_input_require_grads()
    models = {"peftlab": lab, "peft": pf, "base": frozen}
    for m in models.values(): m.train()
    if method == "prefix": ids = ids[:, : SEQ - 20].contiguous()
    steps = {n: train_step(m, ids, method == "adalora" and n != "base") for n, m in models.items()}
    times, losses = interleaved(steps, warmup, repeats)
    diff = (torch.stack(losses["peftlab"]) - torch.stack(losses["peft"])).abs().max().item()
    med = {n: statistics.median(t) * 1e3 for n, t in times["wall"].items()}
    pr = lambda a, b: statistics.median(x / y for x, y in zip(times["wall"][a], times["wall"][b]))
    return dict(method=method, shape=shape, peftlab_ms=med["peftlab"], peft_ms=med["peft"], base_ms=med["base"],
                paired_peftlab_over_peft=pr("peftlab", "peft"), paired_peftlab_over_base=pr("peftlab", "base"),
                paired_peft_over_base=pr("peft", "base"), max_abs_loss_diff=diff,
                trainable=sum(p.numel() for p in trainable(lab)))

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true"); ap.add_argument("--repeats", type=int)
    ap.add_argument("--warmup", type=int); ap.add_argument("--methods", default="adalora,ia3,prefix,dora")
    ap.add_argument("--shapes", default="gpt2,llama")
    ap.add_argument("--out", default=str(Path(__file__).with_name("results_methods.json")))
    a = ap.parse_args(argv)
    warmup = a.warmup if a.warmup is not None else (1 if a.quick else 3)
    repeats = a.repeats if a.repeats is not None else (3 if a.quick else 15)
    transformers.logging.set_verbosity_error(); warnings.filterwarnings("ignore")
    print(f"torch {torch.__version__}  transformers {transformers.__version__}  peft {peft.__version__}  "
          f"peftlab {peftlab.__version__}  threads {torch.get_num_threads()}; batch {BATCH}x{SEQ}, vocab {VOCAB}; "
          f"warmup {warmup}, repeats {repeats}, interleaved peftlab/peft/base")
    ids = torch.randint(0, VOCAB, (BATCH, SEQ), generator=torch.Generator().manual_seed(0))
    rows = []
    for method in a.methods.split(","):
        for shape in a.shapes.split(","):
            t0 = time.perf_counter(); r = run(method, shape, warmup, repeats, ids); rows.append(r)
            print(f"  {method:8s} {shape:5s} done in {time.perf_counter() - t0:5.1f}s; |loss peftlab - PEFT| max {r['max_abs_loss_diff']:.1e}")
    print("\n| method | shape | trainable | peftlab ms | PEFT ms | base ms | paired lab/PEFT | paired lab/base | paired PEFT/base |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | {r['shape']} | {r['trainable']:,} | {r['peftlab_ms']:.1f} | {r['peft_ms']:.1f} | "
              f"{r['base_ms']:.1f} | {r['paired_peftlab_over_peft']:.3f} | {r['paired_peftlab_over_base']:.3f} | "
              f"{r['paired_peft_over_base']:.3f} |")
    json.dump(rows, open(a.out, "w"), indent=1); print(f"wrote {a.out}")

if __name__ == "__main__": main()
