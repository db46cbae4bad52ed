#!/usr/bin/env python
"""Memory estimator calibration: `peftlab.memory.estimate_memory` against measured training steps, plus its latency.

Part 1, calibration. Models are built from configs (random weights, no download) and trained for one measured step
after one warm-up step (so AdamW's states exist):

    loss = model(input_ids=ids, labels=ids).loss; loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)

measured with `peftlab.memory.measure_memory` (CPU: live-tensor baseline + torch.profiler's peak allocation
increase; CUDA: torch.cuda.max_memory_allocated after reset_peak_memory_stats). The estimate is
`estimate_memory(model, batch_size=..., seq_len=..., ..., device=...)` on the same model. The ratio is
estimate / (measured peak - bytes held by unrelated tensors before the case started).

* "LLM-like" shape: Llama, 8 layers, hidden 512, intermediate 1376, 8 heads / 4 KV heads, vocab 32000 (the
  Llama-2 vocabulary), so the loss buffers relate to the layers as in a real 7B model at a few thousand tokens.
* "small-vocab" shape: the same layers with vocab 512 and intermediate 2752, where the peak moves into the decoder
  layers' backward (a stress test of the transient model).
* QLoRA: every nn.Linear but lm_head replaced by bitsandbytes Linear4bit (NF4), LoRA r=16 on all linear layers.

Part 2, latency of `estimate_memory` on meta models of the shipped configs (Llama-2-7B float16, Llama-2-70B): the
first call (builds the meta twin, wraps it, traces, fits) and repeated calls with a new batch size each (the
planner's case: arithmetic on the cached analysis); median of --repeats.

A third latency column: a LoRA rank never asked for before (the planner's rank slider), which interpolates the
cached analyses at ranks 2 and 3 instead of tracing again.

Usage: python bench/bench_memory.py [--quick] [--device cpu|cuda] [--only calibration|latency] [--repeats N]
       [--threads N] [--out PATH]
Writes every number to bench/results_memory.json (gitignored) unless --out says otherwise.
"""
import argparse, gc, json, os, platform, statistics, sys, time, warnings
from pathlib import Path

import torch
import torch.nn as nn
import transformers

from peftlab.lora import LoraConfig
from peftlab.model import get_peft_model
from peftlab.prompts import PromptTuningConfig
from peftlab.core import output_head_names
from peftlab.memory import estimate_memory, measure_training_step, live_tensor_bytes, meta_model


def llama(vocab=32000, inter=1376, hidden=512, layers=8, heads=8, kv=4, attn="sdpa", seed=0, **_):
    torch.manual_seed(seed)
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(
        num_hidden_layers=layers, hidden_size=hidden, intermediate_size=inter, num_attention_heads=heads,
        num_key_value_heads=kv, vocab_size=vocab, max_position_embeddings=4096, attn_implementation=attn))


def quantize_4bit(model, double_quant=False):
    import bitsandbytes as bnb
    for name, m in list(model.named_modules()):
        if type(m) is nn.Linear and name not in output_head_names(model):
            q = bnb.nn.Linear4bit(m.in_features, m.out_features, bias=m.bias is not None, compute_dtype=m.weight.dtype,
                                  quant_type="nf4", compress_statistics=double_quant)
            q.load_state_dict(m.state_dict()); q = q.to(m.weight.device)
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, q)
    return model


def cases(quick: bool, device: str):
    dt = torch.bfloat16 if device == "cuda" else torch.float32
    base = (lambda **kw: llama(**kw).to(device, dt))
    qv = dict(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"])
    allin = lambda r=16: LoraConfig(r=r, target_modules="all-linear")
    s = 2 if device == "cuda" else 1                        # longer sequences on a GPU
    out = [
        ("full FT",                   lambda: base(), dict(batch_size=2, seq_len=256 * s)),
        ("full FT, checkpointing",    lambda: base(), dict(batch_size=4, seq_len=256 * s, gradient_checkpointing=True)),
        ("full FT, batch 1 x 32",     lambda: base(), dict(batch_size=1, seq_len=32)),
        ("LoRA q,v",                  lambda: get_peft_model(base(), LoraConfig(**qv)), dict(batch_size=4, seq_len=256 * s)),
        ("LoRA q,v, eager",           lambda: get_peft_model(base(attn="eager"), LoraConfig(**qv)), dict(batch_size=4, seq_len=256 * s)),
        ("LoRA all-linear, ckpt",     lambda: get_peft_model(base(), allin()), dict(batch_size=4, seq_len=512 * s, gradient_checkpointing=True)),
        ("QLoRA all-linear",          lambda: get_peft_model(quantize_4bit(base()), allin()), dict(batch_size=4, seq_len=256 * s)),
        ("QLoRA, checkpointing",      lambda: get_peft_model(quantize_4bit(base(), True), allin()),
                                      dict(batch_size=4, seq_len=512 * s, gradient_checkpointing=True)),
        ("prompt tuning, 32 tokens",  lambda: get_peft_model(base(), PromptTuningConfig(num_virtual_tokens=32, task_type="CAUSAL_LM")),
                                      dict(batch_size=4, seq_len=256 * s)),
        ("small-vocab: LoRA all-linear, ckpt", lambda: get_peft_model(base(vocab=512, inter=2752), allin(8)),
                                      dict(batch_size=4, seq_len=512 * s, gradient_checkpointing=True)),
        ("small-vocab: QLoRA, ckpt",  lambda: get_peft_model(quantize_4bit(base(vocab=512, inter=2752)), allin()),
                                      dict(batch_size=4, seq_len=256 * s, gradient_checkpointing=True)),
        ("small-vocab: full FT",      lambda: base(vocab=512, inter=2752), dict(batch_size=2, seq_len=256 * s)),
    ]
    if quick: out = [c for c in out if c[0] in ("full FT", "LoRA q,v", "QLoRA, checkpointing", "small-vocab: QLoRA, ckpt")]
    return out


def calibrate(device: str, quick: bool):
    rows = []
    gc.collect()
    other = live_tensor_bytes() if device == "cpu" else torch.cuda.memory_allocated()
    for name, make, kw in cases(quick, device):
        t0 = time.perf_counter()
        model = make()
        meas = measure_training_step(model, device=device, **kw)
        est = estimate_memory(model, device=device, **kw)
        measured = meas.peak_bytes - other
        rows.append(dict(case=name, **kw, estimate=est.total_bytes, measured=measured,
                         ratio=est.total_bytes / measured, peak=est.peak_phase, seconds=time.perf_counter() - t0))
        r = rows[-1]
        print(f"  {name:36s} B={kw['batch_size']:<2d} T={kw['seq_len']:<5d} estimate {r['estimate'] / 2**20:9.1f} MiB"
              f"  measured {r['measured'] / 2**20:9.1f} MiB  ratio {r['ratio']:.3f}  ({r['peak']})", flush=True)
        del model, meas, est
        gc.collect()
    return rows


def latency(repeats: int):
    res = {}
    for name in ("llama-2-7b", "llama-2-70b"):
        for label, cfg, kw in (("LoRA q,v", LoraConfig(r=8, target_modules=["q_proj", "v_proj"]), {}),
                               ("QLoRA all-linear + ckpt", LoraConfig(r=16, target_modules="all-linear"),
                                dict(quantization="4bit", double_quant=True, gradient_checkpointing=True))):
            t0 = time.perf_counter(); m = meta_model(name); build = time.perf_counter() - t0
            t0 = time.perf_counter(); e = estimate_memory(m, cfg, batch_size=1, seq_len=512, **kw); first = time.perf_counter() - t0
            times = []
            for i in range(repeats):
                t0 = time.perf_counter()
                estimate_memory(m, cfg, batch_size=2 + i % 15, seq_len=256 * (1 + i % 8), **kw)
                times.append(time.perf_counter() - t0)
            ranks = []                                    # a rank never seen before: interpolated, no new trace
            for r in (4, 12, 24, 32, 48, 64, 96, 128):
                c = LoraConfig(r=r, target_modules=cfg.target_modules)
                t0 = time.perf_counter(); estimate_memory(m, c, batch_size=1, seq_len=512, **kw); ranks.append(time.perf_counter() - t0)
            res[f"{name} {label}"] = dict(build_meta_model_s=build, first_call_s=first, repeated_median_ms=1000 * statistics.median(times),
                                          repeated_max_ms=1000 * max(times), new_rank_median_ms=1000 * statistics.median(ranks),
                                          new_rank_max_ms=1000 * max(ranks), total_gib_b1_t512=e.total_gib)
            print(f"  {name:12s} {label:24s} meta_model {build * 1000:4.0f} ms | first call {first * 1000:5.0f} ms | "
                  f"new batch/length: median {1000 * statistics.median(times):4.1f} ms, max {1000 * max(times):4.1f} ms | "
                  f"new rank: median {1000 * statistics.median(ranks):4.1f} ms, max {1000 * max(ranks):4.1f} ms", flush=True)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="4 calibration cases, 10 latency repeats")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", choices=["calibration", "latency"], default=None, help="run one part only")
    ap.add_argument("--out", default=str(Path(__file__).with_name("results_memory.json")))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    warnings.filterwarnings("ignore")
    transformers.logging.set_verbosity_error()
    repeats = a.repeats or (10 if a.quick else 50)
    info = dict(python=platform.python_version(), torch=torch.__version__, transformers=transformers.__version__,
                machine=platform.machine(), cpus=os.cpu_count(), threads=a.threads, device=a.device,
                gpu=torch.cuda.get_device_name() if a.device == "cuda" else None, load_start=os.getloadavg())
    print(f"# bench_memory: device={a.device}, torch {torch.__version__}, transformers {transformers.__version__}, "
          f"load {info['load_start'][0]:.1f}")
    rows, lat = [], {}
    if a.only in (None, "calibration"):
        print("calibration (estimate / measured peak of one training step):")
        t0 = time.perf_counter()
        rows = calibrate(a.device, a.quick)
        ratios = [r["ratio"] for r in rows]
        print(f"  ratio range {min(ratios):.3f} .. {max(ratios):.3f} over {len(rows)} cases ({time.perf_counter() - t0:.0f} s)")
    if a.only in (None, "latency"):
        print("estimate_memory latency on meta models:")
        lat = latency(repeats)
    info["load_end"] = os.getloadavg()
    Path(a.out).write_text(json.dumps(dict(info=info, calibration=rows, latency=lat), indent=1, default=str))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
