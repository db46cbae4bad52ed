#!/usr/bin/env python
"""Joint vs sequential LoRA sweeps: wall time, peak memory, and equal results.

`peftlab.sweep(joint=True)` trains all configurations on one shared frozen base, several configurations per forward
(rows tiled once per configuration, mixed-adapter LoRA layers; how many per forward: `per_forward`, by default
chosen from the device and the step size); `joint=False` trains them one after the other with the same code. This
script sweeps 6 LoRA configurations (r in {2, 4, 8} x lora_alpha in {8, 16}, q_proj/v_proj, dropout 0) of a causal
LM built from a config (bench_lora.py's Llama shape: 4 layers, hidden 256, GQA 4/2 heads, vocab 8000) on random
token rows, in three regimes:

* "compute": batch 8 x 128 tokens per configuration;
* "mid": batch 4 x 64 tokens per configuration;
* "overhead": batch 2 x 32 tokens per configuration (small steps, where per-forward overhead dominates).

Contenders: "joint" (the default `per_forward`), "joint-all" (all 6 in one forward, `per_forward=6`) and
"sequential". Timing: the modes run alternately (round robin), `--repeats` full sweeps each, after one warm-up sweep
each; medians and paired ratios (median over rounds of sequential/joint) are printed. Memory: peak bytes of a short
sweep (3 steps: the peak comes in the first steps, once AdamW's states exist), measured with
`peftlab.memory.measure_memory` (CPU: torch.profiler allocation events on top of the tensors alive before; CUDA:
max_memory_allocated) when that module is available, otherwise as the peak RSS of a child process running only that
sweep. Equality: largest |difference| between the two modes in any per-step loss and any final adapter weight.

Usage: python bench/bench_sweep.py [--threads 1] [--repeats 3] [--steps 20] [--regimes compute,overhead]
       [--device cpu|cuda] [--out PATH]
"""
import argparse, json, math, os, resource, statistics, subprocess, sys, time, warnings
from pathlib import Path
import torch
sys.path.insert(0, str(Path(__file__).parent))
from bench_lora import build_base, VOCAB
import peftlab
from peftlab.lora import LoraConfig
from peftlab.sweep import sweep

GRID = {"r": [2, 4, 8], "lora_alpha": [8, 16]}
BASE = dict(task_type="CAUSAL_LM", r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
REGIMES = {"compute": dict(batch_size=8, seq=128), "mid": dict(batch_size=4, seq=64),
           "overhead": dict(batch_size=2, seq=32)}
MODES = {"joint": dict(joint=True), "joint-all": dict(joint=True, per_forward=6), "sequential": dict(joint=False)}

def rows(n: int, seq: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [{"input_ids": torch.randint(0, VOCAB, (seq,), generator=g).tolist()} for _ in range(n)]

def run_sweep(model, data, joint: bool, steps: int, batch_size: int, **kw):
    return sweep(model, data, GRID, base_config=LoraConfig(**BASE), steps=steps, lr=1e-3, batch_size=batch_size,
                 joint=joint, live=False, progress=False, **kw)

def run_mode(model, data, mode: str, steps: int, batch_size: int, **kw):
    m = dict(MODES[mode]); return run_sweep(model, data, m.pop("joint"), steps, batch_size, **m, **kw)

DEVICE = "cpu"

def model_and_rows(regime: str, n: int):
    return build_base("llama").to(DEVICE), rows(n, REGIMES[regime]["seq"])

def peak_bytes(joint: bool, regime: str, steps: int):
    "`(bytes, how)`: peak memory of a short sweep."
    try: from peftlab.memory import measure_memory
    except ImportError: measure_memory = None
    if measure_memory is not None:
        model, data = model_and_rows(regime, 64)
        m = measure_memory(run_sweep, model, data, joint, steps, REGIMES[regime]["batch_size"], device=DEVICE)
        return m.peak_bytes, f"peftlab.memory.measure_memory ({m.device})"
    out = subprocess.run([sys.executable, __file__, "--child", regime, "--steps", str(steps), "--device", DEVICE]
                         + (["--joint"] if joint else []),
                         capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]), "peak RSS of a child process (ru_maxrss)"

def child(regime: str, steps: int, joint: bool):
    model, data = model_and_rows(regime, 64)
    run_sweep(model, data, joint, steps, REGIMES[regime]["batch_size"])
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)

def bench(regime: str, steps: int, repeats: int):
    model, data = model_and_rows(regime, 256)
    bs = REGIMES[regime]["batch_size"]
    events = []
    out = {mode: run_mode(model, data, mode, steps, bs, return_adapters=True, callbacks=[events.append])
           for mode in MODES}                                                 # warm-up + equality check
    per_forward = [e["per_forward"] for e in events if e["kind"] == "start"][0]
    (s, sa), dloss, dw = out["sequential"], 0.0, 0.0
    for mode in ("joint", "joint-all"):
        j, ja = out[mode]
        dloss = max(dloss, max(abs(a - b) for k in range(len(j)) for a, b in zip(j.losses[k], s.losses[k])))
        dw = max(dw, max((ja[k][n] - sa[k][n]).abs().max().item() for k in range(len(j)) for n in ja[k]))
    times = {mode: [] for mode in MODES}
    sync = torch.cuda.synchronize if DEVICE == "cuda" else (lambda: None)
    for _ in range(repeats):
        for mode in MODES:
            sync(); t0 = time.perf_counter(); run_mode(model, data, mode, steps, bs); sync()
            times[mode].append(time.perf_counter() - t0)
    paired = statistics.median(b / a for a, b in zip(times["joint"], times["sequential"]))
    paired_all = statistics.median(b / a for a, b in zip(times["joint-all"], times["sequential"]))
    mem = {mode: peak_bytes(mode == "joint", regime, 3) for mode in ("joint", "sequential")}
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    return dict(regime=regime, batch_size=bs, seq=REGIMES[regime]["seq"], steps=steps, configs=len(j),
                per_forward=per_forward, joint_s=statistics.median(times["joint"]),
                joint_all_s=statistics.median(times["joint-all"]), sequential_s=statistics.median(times["sequential"]),
                paired_speedup=paired, paired_speedup_all=paired_all, times=times, peak_joint=mem["joint"][0], peak_sequential=mem["sequential"][0],
                memory_method=mem["joint"][1], base_weight_bytes=weights, max_dloss=dloss, max_dweight=dw,
                losses_first_last=[(round(l[0], 4), round(l[-1], 4)) for l in out["joint"][0].losses])

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--regimes", default="compute,mid,overhead")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--joint", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    global DEVICE; DEVICE = a.device
    torch.set_num_threads(a.threads)
    warnings.filterwarnings("ignore")
    if a.child: return child(a.child, a.steps, a.joint)
    load0 = os.getloadavg()[0]
    print(f"torch {torch.__version__}, peftlab {peftlab.__version__}, device {DEVICE}, threads {torch.get_num_threads()}, "
          f"load average {load0:.2f}; {len(GRID['r']) * len(GRID['lora_alpha'])} configs {GRID}, {a.steps} steps, "
          f"{a.repeats} timed sweeps per mode", flush=True)
    results = []
    for regime in a.regimes.split(","):
        r = bench(regime, a.steps, a.repeats); results.append(r)
        print(f"\n[{regime}] batch {r['batch_size']} x {r['seq']} tokens per config; the default joint sweep ran "
              f"{r['per_forward']} config(s) per forward")
        print(f"  wall time   joint {r['joint_s']:.2f}s  joint-all {r['joint_all_s']:.2f}s  sequential "
              f"{r['sequential_s']:.2f}s  paired sequential/joint {r['paired_speedup']:.2f}x  sequential/joint-all "
              f"{r['paired_speedup_all']:.2f}x")
        print(f"  peak memory joint {r['peak_joint'] / 2**20:.1f} MiB  sequential {r['peak_sequential'] / 2**20:.1f} MiB  "
              f"joint/sequential {r['peak_joint'] / r['peak_sequential']:.2f}  [{r['memory_method']}]")
        print(f"              base weights {r['base_weight_bytes'] / 2**20:.1f} MiB; {r['configs']} runs in parallel "
              f"(one model copy each) would peak at ~{r['configs']} x sequential = "
              f"{r['configs'] * r['peak_sequential'] / 2**20:.1f} MiB (joint/that {r['peak_joint'] / (r['configs'] * r['peak_sequential']):.2f})")
        print(f"  equality    max |dloss| {r['max_dloss']:.1e}  max |dweight| {r['max_dweight']:.1e}", flush=True)
    print(f"\nload average at end {os.getloadavg()[0]:.2f} (start {load0:.2f})")
    if a.out: Path(a.out).write_text(json.dumps(results, indent=1))

if __name__ == "__main__": main()
