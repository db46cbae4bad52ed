#!/usr/bin/env python
"""delta_spectra (singular values of LoRA's ΔW from thin QR decompositions of its factors) vs a dense SVD.

Protocol: `--layers` peftlab LoRA layers (`peftlab.lora.Linear` around `nn.Linear(d, d)`, default d=4096 — the
q/k/v/o shape of a Llama-7B block), rank `--r` (default 16), adapter factors A, B filled with N(0, 1) noise (seeded)
so that ΔW = (α/r)·B·A has r significant singular values. Contenders, timed round-robin (`--rounds` rounds):

* dense:    for each layer `torch.linalg.svdvals(layer.delta_weight("default"))` — form the d×d ΔW, then a full SVD
            (what one writes without the factored form);
* factored: `peftlab.analysis.delta_spectra(model)` over all layers at once (QR of B and Aᵀ, SVD of the r×r core),
            repeated `--inner` times per round, best-of-inner time taken per round.

Reported: median seconds per layer of each, the ratio dense/factored (median over rounds of the per-round ratio),
and the values: max relative difference between the two spectra (top r values), the largest dense singular value
beyond r relative to σ₁ (should be rounding noise), and each spectrum's max relative error against a float64
factored reference. No assertion on time; a mismatch of values above 1e-3 exits with status 1.

Usage: python bench/bench_spectra.py [--quick] [--d 4096] [--r 16] [--layers 4] [--rounds 3] [--threads N] [--out F]
"""
import argparse, json, os, platform, statistics, sys, time
import torch
import torch.nn as nn


def build(d: int, r: int, layers: int, seed: int = 0) -> nn.Module:
    "A container of `layers` LoRA-wrapped d×d linears with random factors."
    from peftlab.lora import Linear as LoraLinear
    g = torch.Generator().manual_seed(seed)
    m = nn.Module()
    for i in range(layers):
        lin = nn.Linear(d, d, bias=False)
        layer = LoraLinear(lin, "default", r=r, lora_alpha=2 * r, init_lora_weights=False)
        with torch.no_grad():
            layer.lora_A["default"].weight.copy_(torch.randn(r, d, generator=g))
            layer.lora_B["default"].weight.copy_(torch.randn(d, r, generator=g))
        m.add_module(f"layer{i}", layer)
    return m.eval()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--d", type=int, default=4096)
    ap.add_argument("--r", type=int, default=16)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--inner", type=int, default=20)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--quick", action="store_true", help="d=1024, 2 layers, 2 rounds: a smoke run of a few seconds")
    ap.add_argument("--out", default=None, help="write every sample as JSON here")
    a = ap.parse_args()
    if a.quick: a.d, a.layers, a.rounds = 1024, 2, 2
    if a.threads: torch.set_num_threads(a.threads)
    from peftlab.analysis import delta_spectra, svd_from_factors, delta_factors

    load0 = os.getloadavg()[0]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {platform.processor() or platform.machine()}, "
          f"load average {load0:.2f}")
    print(f"{a.layers} LoRA layers {a.d}x{a.d}, r={a.r}; {a.rounds} rounds")
    model = build(a.d, a.r, a.layers)
    layers = [m for _, m in model.named_children()]

    with torch.no_grad():
        delta_spectra(model); torch.linalg.svdvals(layers[0].delta_weight("default")[:256, :256])   # warm-up
        dense_t, fact_t, ratios = [], [], []
        for rnd in range(a.rounds):
            t0 = time.perf_counter()
            dense = [torch.linalg.svdvals(l.delta_weight("default")) for l in layers]
            td = (time.perf_counter() - t0) / a.layers
            best = float("inf")
            for _ in range(a.inner):
                t0 = time.perf_counter(); sp = delta_spectra(model); best = min(best, time.perf_counter() - t0)
            tf = best / a.layers
            dense_t.append(td); fact_t.append(tf); ratios.append(td / tf)
            print(f"  round {rnd}: dense {td:.3f} s/layer, factored {tf * 1e3:.3f} ms/layer, ratio {td / tf:,.0f}x")

        rel, tail, err_dense, err_fact = 0.0, 0.0, 0.0, 0.0
        for (name, s), l, sd in zip(sp.items(), layers, dense):
            L, R = delta_factors(l, "default")
            ref = svd_from_factors(L.double(), R.double(), compute_uv=False)   # float64 reference
            k = len(s)
            rel = max(rel, ((s.double() - sd[:k].double()).abs() / sd[:k].double()).max().item())
            tail = max(tail, (sd[k:].max() / sd[0]).item())
            err_dense = max(err_dense, ((sd[:k].double() - ref).abs() / ref).max().item())
            err_fact = max(err_fact, ((s.double() - ref).abs() / ref).max().item())

    res = dict(d=a.d, r=a.r, layers=a.layers, threads=torch.get_num_threads(), load_start=load0,
               load_end=os.getloadavg()[0], dense_s_per_layer=dense_t, factored_s_per_layer=fact_t, ratios=ratios,
               max_rel_diff=rel, dense_tail_over_top=tail, dense_vs_fp64=err_dense, factored_vs_fp64=err_fact)
    print(f"\ndense    : {statistics.median(dense_t):.3f} s per layer (median of {a.rounds} rounds)")
    print(f"factored : {statistics.median(fact_t) * 1e3:.3f} ms per layer (best of {a.inner}, median of rounds)")
    print(f"ratio    : {statistics.median(ratios):,.0f}x faster (median of per-round ratios; "
          f"range {min(ratios):,.0f}-{max(ratios):,.0f})")
    print(f"values   : max relative difference factored vs dense (top {a.r}) = {rel:.2e}; "
          f"dense σ beyond r / σ₁ = {tail:.1e}")
    print(f"           vs a float64 reference: dense fp32 {err_dense:.1e}, factored fp32 {err_fact:.1e}")
    print(f"load average at the end: {res['load_end']:.2f}")
    if a.out:
        with open(a.out, "w") as f: json.dump(res, f, indent=1)
    if rel > 1e-3: sys.exit("spectra differ by more than 1e-3")


if __name__ == "__main__":
    main()
