"""Sampling speed of the AR prior: KV-cached loop vs re-running the whole prefix, with and without guidance; and
MaskGIT's parallel decoding (plugins/vqstack-maskgit) against it at equal model size.

The model is the default prior (vocab 1024, 256 tokens = a 16x16 grid, dim 512, 8 blocks, 8 heads, 10 classes) with
random weights; speed does not depend on what it learnt. Every case is timed over ``--reps`` runs after a warm-up
and reported as the fastest run (the median is kept too). "floor_s" is the larger of two floors measured on this
machine: the run's FLOPs at large-matmul throughput, and its compulsory memory traffic (every weight once per step,
the KV cache read once per step) at the bandwidth of a large reduction. Small-batch decoding is bound by the second.
"gemm_s" is a third, practical reference measured in the same run: only the model's matmuls of one decode step at
that batch (every layer's weights in turn, so they stream from memory as in sampling), times the steps. x_floor above
x_gemm shows what the matmul kernels themselves lose at small batches; x_gemm near 1 says the rest of the step
(attention, norms, sampling, Python) costs little.

    python benchmarks/sampling_speed.py [--device cpu|cuda] [--dtype float32|bfloat16] [--json-out results.json]
    python benchmarks/sampling_speed.py --quick      # batches 1 and 8, one rep, the no-cache loop on 64 tokens only
    python benchmarks/sampling_speed.py --maskgit-only   # just maskgit vs ar: 8 images of 256 tokens, same sizes

Prints JSON. Cases: batch 1, 8, 64, each unguided and with classifier-free guidance (2x batch in one forward); at
batch 8 also LlamaModel.forward with transformers' DynamicCache / StaticCache instead of our decode step
(vqstack/priors/decode.py), and the no-cache loop (which re-runs the full prefix every step). The no-cache loop at batch 64 is skipped: it costs ~100x the cached run.
Shared machines: CPU pressure (Linux PSI) is recorded before and after; compare runs only when it stayed low.

maskgit vs ar: both priors built at MODEL's sizes with random weights, each timed through its public ``generate`` (ar
with its KV cache) for 8 images, unguided and guided, maskgit at 8 and 12 passes; the ratio is maskgit's time over
ar's in the same run (issue target: <= 0.25). "ratio_at_maskgit_floor" divides maskgit's compute floor (its FLOPs at
this machine's matmul throughput) by ar's measured time: above 0.25, no maskgit implementation can meet the target
on this device. Skipped, with a note, when the maskgit plugin is not installed.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import torch
import transformers

from vqstack.priors import ARPrior
from vqstack.priors.sampling import sample_tokens
from vqstack.priors.steppers import KVCacheStepper, RecomputeStepper

MODEL = {"vocab_size": 1024, "seq_len": 256, "num_classes": 10, "dim": 512, "depth": 8, "heads": 8}
CFG_SCALE = 3.0


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cpu_pressure() -> float | None:
    """Share of the last 10 s in which some runnable task waited for a CPU (other processes competing)."""
    try:
        with open("/proc/pressure/cpu") as f:
            return float(f.readline().split()[1].split("=")[1])
    except (OSError, IndexError, ValueError):
        return None


def matmul_gflops(device: torch.device, dtype: torch.dtype) -> float:
    """Throughput of a large square matmul: what the arithmetic floor is measured against."""
    a = torch.randn(2048, 2048, device=device, dtype=dtype)
    b = torch.randn(2048, 2048, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    sync(device)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * 2048 ** 3 / best / 1e9


def memory_gbps(device: torch.device) -> float:
    """Read bandwidth: summing a 512 MB tensor (far larger than any cache)."""
    x = torch.ones(128 * 2 ** 20, device=device)
    x.sum()
    sync(device)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        x.sum()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return x.numel() * 4 / best / 1e9


def sampling_gbytes(prior: ARPrior, batch: int, steps: int) -> float:
    """Memory read by a cached run: all weights once per step, plus the keys and values seen so far."""
    cfg = prior.config
    element = prior.head.weight.element_size()
    weights = sum(m.weight.numel() for m in prior.modules() if isinstance(m, torch.nn.Linear)) * element
    cached = sum(prior.prefix_len + t for t in range(steps))  # positions in the cache at each step
    kv = 2 * cfg.num_hidden_layers * cfg.hidden_size * batch * cached * element
    return (weights * steps + kv) / 1e9


def sampling_gflop(prior: ARPrior, batch: int, steps: int, cached: bool) -> float:
    """Forward FLOPs of sampling ``steps`` tokens for ``batch`` rows: 2 * params per token through every linear
    layer, plus attention (QK^T and PV) over the visible positions."""
    cfg = prior.config
    linear = sum(m.weight.numel() for name, m in prior.named_modules()
                 if isinstance(m, torch.nn.Linear) and name != "head")
    prefix = prior.prefix_len
    if cached:  # every position goes through the model once; the head runs once per step
        positions = [prefix + steps - 1]
        tokens = prefix + steps - 1
    else:  # step t re-runs all prefix + t positions
        positions = [prefix + t for t in range(steps)]
        tokens = sum(positions)
    attention = sum(4 * cfg.hidden_size * n * (n + 1) / 2 for n in positions) * cfg.num_hidden_layers
    head = 2 * prior.head.weight.numel() * steps
    return batch * (2 * linear * tokens + attention + head) / 1e9


def gemm_step_seconds(prior: ARPrior, rows: int, reps: int = 5) -> float:
    """The matmuls of one cached decode step for ``rows`` rows alone, the weights as the decode step stores them
    (vqstack/priors/decode.py: fused, (in, out)): every layer in turn, so each weight comes from memory as it does
    while sampling. Fastest of ``reps`` passes over all layers, after a warm-up."""
    from vqstack.priors.decode import LlamaDecoder

    layers = LlamaDecoder(prior.backbone, 1).layers
    head = prior.head.weight.t().contiguous()
    weights = [w for layer in layers for w in (layer["qkv"], layer["o"], layer["gate_up"], layer["down"])] + [head]
    inputs = {w.shape[0]: torch.randn(rows, w.shape[0], dtype=w.dtype, device=w.device) for w in weights}

    def step() -> None:
        for w in weights:
            inputs[w.shape[0]] @ w
        sync(head.device)

    step()
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - start)
    return best


def time_sampling(prior: ARPrior, batch: int, guided: bool, reps: int, steps: int | None = None,
                  cached: bool = True, cache: str = "preallocated") -> dict:
    steps = steps or prior.seq_len
    device = prior.device
    labels = torch.arange(batch) % prior.num_classes
    prefix = prior.condition_tokens(labels, batch)
    if guided:
        prefix = torch.cat([prefix, prior.null_prefix.expand(batch, -1)])

    def run(n_steps: int) -> None:
        stepper = (KVCacheStepper if cached else RecomputeStepper)(
            prior.backbone, prior.head, prior.prefix_len + prior.seq_len, cache=cache)
        with torch.inference_mode():
            sample_tokens(stepper, prefix, n_steps, prior.vocab_size, CFG_SCALE if guided else None,
                          generator=torch.Generator(device).manual_seed(0))
        sync(device)

    run(min(steps, 8))  # warm-up: kernels, allocator
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        run(steps)
        times.append(time.perf_counter() - start)
    seconds = min(times)
    rows = 2 * batch if guided else batch
    gflop = sampling_gflop(prior, rows, steps, cached)
    return {"batch": batch, "cfg": guided, "cache": cache if cached else "none", "tokens": steps,
            "seconds": round(seconds, 3), "median_seconds": round(statistics.median(times), 3),
            "images_per_s": round(batch * steps / prior.seq_len / seconds, 3),
            "tokens_per_s": round(batch * steps / seconds, 1),
            "gflop": round(gflop, 1), "gflops_achieved": round(gflop / seconds, 1)}


def time_generate(prior, batch: int, guided: bool, reps: int, **options) -> float:
    """Fastest of ``reps`` runs of ``prior.generate(batch, ...)`` after a warm-up, seconds."""
    labels = [i % prior.num_classes for i in range(batch)]

    def run() -> None:
        prior.generate(batch, labels=labels, cfg_scale=CFG_SCALE if guided else 1.0,
                       generator=torch.Generator(prior.device).manual_seed(0), **options)
        sync(prior.device)

    run()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def maskgit_gflop(prior, rows: int, steps: int) -> float:
    """Forward FLOPs of ``steps`` full passes over prefix + seq_len positions for ``rows`` rows: 2 * params per
    position through every linear layer, plus attention over all positions (bidirectional: n^2 per layer)."""
    linear = sum(m.weight.numel() for name, m in prior.named_modules()
                 if isinstance(m, torch.nn.Linear) and name != "head")
    n = prior.prefix_len + prior.seq_len
    attention = 4 * prior.backbone.config.hidden_size * n * n * prior.backbone.config.num_hidden_layers
    head = 2 * prior.head.weight.numel() * prior.seq_len
    return steps * rows * (2 * linear * n + attention + head) / 1e9


def maskgit_vs_ar(ar: ARPrior, device: torch.device, dtype: torch.dtype, reps: int, batch: int = 8) -> dict:
    """maskgit's parallel decoding against ar's KV-cached loop: 8 images of 256 tokens at the same sizes."""
    import vqstack

    if "maskgit" not in vqstack.components("prior"):
        return {"skipped": "the maskgit plugin is not installed: pip install -e plugins/vqstack-maskgit"}
    torch.manual_seed(0)
    maskgit = vqstack.build("prior", "maskgit", **MODEL)
    torch.nn.init.normal_(maskgit.head.weight, std=0.02)
    maskgit = maskgit.to(device=device, dtype=dtype).eval()
    peak = matmul_gflops(device, dtype)
    rows = []
    for guided in (False, True):
        ar_seconds = time_generate(ar, batch, guided, reps)
        for steps in (8, 12):
            seconds = time_generate(maskgit, batch, guided, reps, steps=steps)
            floor = maskgit_gflop(maskgit, 2 * batch if guided else batch, steps) / peak
            rows.append({"batch": batch, "cfg": guided, "maskgit_steps": steps, "maskgit_seconds": round(seconds, 3),
                         "ar_seconds": round(ar_seconds, 3), "ratio": round(seconds / ar_seconds, 3),
                         "ratio_target": 0.25, "maskgit_compute_floor_s": round(floor, 3),
                         "ratio_at_maskgit_floor": round(floor / ar_seconds, 3)})
    parameters = {name: sum(p.numel() for p in model.parameters()) for name, model in (("ar", ar), ("maskgit", maskgit))}
    return {"parameters": parameters, "results": rows}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="model weights dtype")
    p.add_argument("--reps", type=int, default=None, help="timed runs per case (default: 2, --quick: 1)")
    p.add_argument("--quick", action="store_true", help="batches 1 and 8 only, one rep, no-cache on 64 tokens")
    p.add_argument("--maskgit-only", action="store_true", help="only maskgit vs ar at equal size")
    p.add_argument("--json-out", default=None, help="also write the JSON here")
    args = p.parse_args(argv)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    reps = args.reps or (1 if args.quick else 2)

    torch.manual_seed(0)
    prior = ARPrior(**MODEL)
    torch.nn.init.normal_(prior.head.weight, std=0.02)  # the zero-initialised head would sample uniformly
    prior = prior.to(device=device, dtype=dtype).eval()
    pressure_before = cpu_pressure()
    peak, bandwidth = matmul_gflops(device, dtype), memory_gbps(device)

    if args.maskgit_only:
        report = {"benchmark": "maskgit vs ar sampling", "model": MODEL, "dtype": args.dtype, "device": str(device),
                  "threads": torch.get_num_threads(), "torch": torch.__version__, "reps": reps,
                  "matmul_gflops": round(peak, 1), "memory_gbps": round(bandwidth, 1),
                  "cpu_pressure_before": pressure_before,
                  "maskgit_vs_ar": maskgit_vs_ar(prior, device, dtype, reps), "cpu_pressure_after": cpu_pressure()}
        print(json.dumps(report, indent=2))
        if args.json_out:
            with open(args.json_out, "w") as f:
                f.write(json.dumps(report, indent=2) + "\n")
        return report

    results = []
    for batch in (1, 8) if args.quick else (1, 8, 64):
        for guided in (False, True):
            results.append(time_sampling(prior, batch, guided, reps))
    if not args.quick:
        for cache in ("dynamic", "static"):
            results.append(time_sampling(prior, 8, False, reps, cache=cache))
    # The no-cache loop: the full 256 tokens (~100x the cached run), or the first 64 with --quick, next to the
    # cached loop over the same tokens.
    no_cache_steps = 64 if args.quick else prior.seq_len
    no_cache = time_sampling(prior, 8, False, 1, steps=no_cache_steps, cached=False)
    cached_same = (next(r for r in results if r["batch"] == 8 and not r["cfg"]) if not args.quick
                   else time_sampling(prior, 8, False, reps, steps=no_cache_steps))
    results.append(no_cache)

    def find(batch, guided, cache="preallocated"):
        return next(r for r in results if (r["batch"], r["cfg"], r["cache"]) == (batch, guided, cache))

    b8, b8_cfg = find(8, False), find(8, True)
    gemm = {}
    for r in results:
        rows = 2 * r["batch"] if r["cfg"] else r["batch"]
        compute = r["gflop"] / peak
        memory = sampling_gbytes(prior, rows, r["tokens"]) / bandwidth * (1 if r["cache"] != "none" else 0)
        r["floor_s"], r["floor_bound"] = round(max(compute, memory), 3), "memory" if memory > compute else "compute"
        r["x_floor"] = round(r["seconds"] / max(compute, memory), 2)
        if r["cache"] != "none":
            gemm.setdefault(rows, gemm_step_seconds(prior, rows))
            r["gemm_s"] = round(gemm[rows] * r["tokens"], 3)
            r["x_gemm"] = round(r["seconds"] / r["gemm_s"], 2)
    summary = {
        "x_floor_target": 1.3, "x_floor_target_batch64": 1.2, "cfg_cost_target": 1.2,
        **{f"batch{b}{'_cfg' if g else ''}_x_floor": find(b, g)["x_floor"]
           for b in ((1, 8) if args.quick else (1, 8, 64)) for g in (False, True)},
        **{f"batch{b}{'_cfg' if g else ''}_x_gemm": find(b, g)["x_gemm"]
           for b in ((1, 8) if args.quick else (1, 8, 64)) for g in (False, True)},
        "batch8_seconds": b8["seconds"],
        "cache_speedup_batch8": round(no_cache["seconds"] / cached_same["seconds"], 1),
        "cache_speedup_over_tokens": no_cache_steps, "cache_speedup_target": 10.0,
        "cfg_cost_batch1": round(find(1, True)["seconds"] / find(1, False)["seconds"], 2),
        "cfg_cost_batch8": round(b8_cfg["seconds"] / b8["seconds"], 2),
    }
    if not args.quick:
        summary["cfg_cost_batch64"] = round(find(64, True)["seconds"] / find(64, False)["seconds"], 2)
        summary["transformers_forward_x_batch8"] = round(find(8, False, "dynamic")["seconds"] / b8["seconds"], 2)
    report = {
        "benchmark": "prior sampling speed", "model": MODEL, "dtype": args.dtype, "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
        or platform.machine(), "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
        "torch": torch.__version__, "transformers": transformers.__version__, "reps": reps,
        "matmul_gflops": round(peak, 1), "memory_gbps": round(bandwidth, 1),
        "cpu_pressure_before": pressure_before, "cpu_pressure_after": cpu_pressure(),
        "summary": summary, "results": results,
        "notes": ["cache 'none' = no KV cache, the full prefix re-run every step"
                  + (" (first 64 tokens only, --quick)" if args.quick else ""),
                  "no-cache at batch 64 skipped: about 100x the cached run's time"],
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json_out:
        with open(args.json_out, "w") as f:
            f.write(text + "\n")
    return report


if __name__ == "__main__":
    main()
