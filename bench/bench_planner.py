#!/usr/bin/env python
"""Update latency of the MemoryPlanner widget on a 7B model on the meta device (the issue asks < 200 ms per move).

A "move" is `planner.set(<one control>=<new value>)`, exactly what a slider or menu change does: the observer fires,
`estimate_memory` runs for the new state, the stacked bars are moved in place and the figure is encoded as the PNG
the page shows. The script moves every control through a cycle of values, round robin, and reports per control:

* first visit: a fresh meta model and planner per control, each value visited once — a move to an r, target set,
  dtype or method never seen before makes `estimate_memory` trace the model anew (its per-model analysis is keyed on
  the LoRA config and dtype); batch, length, optimizer, quantization and checkpointing reuse the analysis;
* cold: the analyses are cached (every value was visited once) but the planner's own memo of estimates is cleared
  before each move, so every move calls `estimate_memory`;
* warm: the same moves again with the memo kept (a user going back to a setting seen before);
* the split of a cold move into estimate, drawing (in-place bar update + Agg draw + PNG) and the rest.

Also timed once: building the meta model and the planner (first display). Models: `meta_model('llama-2-7b')` from
peftlab.memory, and `peftlab.testing.llama_7b_meta()` (the same shape built in code) with --both.

Usage: python bench/bench_planner.py [--rounds N] [--model NAME] [--both] [--out PATH]
"""
import argparse, json, os, platform, statistics, time
from pathlib import Path

MOVES = [  # (control, values cycled through); the planner starts at LoRA r=8, bf16, batch 1 x 512
    ("r", [16, 64, 8]),
    ("batch_size", [2, 8, 1]),
    ("seq_len", [1024, 4096, 512]),
    ("targets", ["all-linear", "attention", "default"]),
    ("dtype", ["float32", "float16", "bfloat16"]),
    ("quantization", ["4bit", "8bit", None]),
    ("optimizer", ["adamw_8bit", "sgd", "adamw"]),
    ("gradient_checkpointing", [True, False]),
    ("method", ["full", "lora"]),
]

def pct(xs, q):
    xs = sorted(xs); return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]

def time_moves(planner, rounds: int, cold: bool, only=None):
    "Per control: list of (total, estimate, draw) seconds over `rounds` cycles."
    import peftlab.widgets as pw
    out = {k: [] for k, _ in MOVES if only is None or k == only}
    est_time = {}
    orig_plan = planner.plan
    def timed_plan(**kw):
        t = time.perf_counter(); r = orig_plan(**kw); est_time["t"] = time.perf_counter() - t; return r
    planner.plan = timed_plan                         # instance attribute: times the estimate inside `set`
    try:
        for _ in range(rounds):
            for k, vals in MOVES:
                if only is not None and k != only: continue
                for v in vals:
                    if cold: planner._cache.clear()
                    t = time.perf_counter(); planner.set(**{k: v}); total = time.perf_counter() - t
                    out[k].append((total, est_time["t"], planner.last_update_seconds - est_time["t"]))
    finally: del planner.plan
    return out

def summarize(moves):
    rows = {}
    for k, xs in moves.items():
        tot = [x[0] * 1e3 for x in xs]; est = [x[1] * 1e3 for x in xs]; drw = [x[2] * 1e3 for x in xs]
        rows[k] = dict(n=len(xs), median_ms=statistics.median(tot), p95_ms=pct(tot, 0.95), max_ms=max(tot),
                       estimate_median_ms=statistics.median(est), draw_median_ms=statistics.median(drw))
    allt = [x[0] * 1e3 for xs in moves.values() for x in xs]
    rows["ALL"] = dict(n=len(allt), median_ms=statistics.median(allt), p95_ms=pct(allt, 0.95), max_ms=max(allt),
                       estimate_median_ms=statistics.median([x[1] * 1e3 for xs in moves.values() for x in xs]),
                       draw_median_ms=statistics.median([x[2] * 1e3 for xs in moves.values() for x in xs]))
    return rows

def table(rows, title):
    lines = [f"{title}", "| control | moves | median ms | p95 ms | max ms | estimate ms (median) | draw+PNG ms (median) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for k, r in rows.items():
        lines.append(f"| {k} | {r['n']} | {r['median_ms']:.1f} | {r['p95_ms']:.1f} | {r['max_ms']:.1f} | "
                     f"{r['estimate_median_ms']:.1f} | {r['draw_median_ms']:.1f} |")
    return "\n".join(lines)

def first_visits(build_model):
    "Per control: a fresh model and planner, each value of the control visited once."
    from peftlab.widgets import MemoryPlanner
    out = {}
    for k, vals in MOVES:
        planner = MemoryPlanner(build_model())
        out.update({k: time_moves(planner, 1, True, only=k)[k]})
    return out

def bench(label, build_model, rounds):
    from peftlab.widgets import MemoryPlanner
    first = summarize(first_visits(build_model))
    t = time.perf_counter(); model = build_model(); t_model = time.perf_counter() - t
    t = time.perf_counter(); planner = MemoryPlanner(model); t_first = time.perf_counter() - t
    n = sum(p.numel() for p in model.parameters())
    for k, vals in MOVES:                             # warm-up: one pass (imports, first estimate per method)
        for v in vals: planner.set(**{k: v})
    cold, warm = summarize(time_moves(planner, rounds, True)), summarize(time_moves(planner, rounds, False))
    print(f"\n## {label}: {n:,} parameters; meta model built in {t_model:.2f} s, planner first shown in {t_first:.2f} s")
    print(table(first, "first visit (fresh model per control; new r / targets / dtype / method values trace anew):"))
    print(table(cold, "cold (analyses cached, every move calls estimate_memory):"))
    print(table(warm, "warm (planner's memo of estimates kept):"))
    return dict(label=label, params=n, build_model_s=t_model, first_update_s=t_first, first=first, cold=cold, warm=warm)

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--model", default="llama-2-7b")
    ap.add_argument("--both", action="store_true", help="also llama_7b_meta() from peftlab.testing")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results_planner.json"))
    a = ap.parse_args()
    import torch, matplotlib, peftlab
    from peftlab.memory import meta_model
    load0 = os.getloadavg()
    print(f"peftlab {peftlab.__version__}, torch {torch.__version__}, matplotlib {matplotlib.__version__}, "
          f"threads {torch.get_num_threads()}, {os.cpu_count()} CPUs, load average at start {load0[0]:.2f}")
    results = [bench(f"meta_model({a.model!r})", lambda: meta_model(a.model), a.rounds)]
    if a.both:
        from peftlab.testing import llama_7b_meta
        results.append(bench("llama_7b_meta()", llama_7b_meta, a.rounds))
    load1 = os.getloadavg()
    print(f"\nload average at end {load1[0]:.2f}")
    Path(a.out).write_text(json.dumps(dict(machine=platform.platform(), cpus=os.cpu_count(),
                                           threads=torch.get_num_threads(), load=[load0, load1],
                                           results=results), indent=1))
    print(f"wrote {a.out}")

if __name__ == "__main__": main()
