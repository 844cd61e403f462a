"""Quantizer speed and memory: vqstack's vq / ema against vector-quantize-pytorch's VectorQuantize.

16,384 vectors (z of shape (16, D, 32, 32)) against 16,384 codes at D = 256 and D = 8; one training step each
(forward + backward of quantized² + loss, EMA updates included). Each case runs in a fresh subprocess:

* time: median of ``--reps`` steps after one warm-up step;
* peak memory: CPU, the process's peak RSS during the steps minus its RSS after setup (module and inputs built);
  on Linux the peak mark (VmHWM) is reset after setup, elsewhere ru_maxrss growth is used. CUDA,
  ``torch.cuda.max_memory_allocated`` minus the memory allocated after setup.

    python benchmarks/quantizer_speed.py [--device cpu|cuda] [--reps 5] [--json-out results.json]
    python benchmarks/quantizer_speed.py --sweep-chunks      # search time per chunk size (how it was chosen)
    python benchmarks/quantizer_speed.py --quick      # 1,024 vectors against 1,024 codes, one rep: a smoke test

Prints JSON; ratios are ours / the faster reference configuration (time and memory) at each dimension.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch

NUM_VECTORS = 16_384
NUM_CODES = 16_384
DIMS = (256, 8)
OURS = ("vqstack-vq", "vqstack-ema")
REFERENCES = ("vqpytorch-ema", "vqpytorch-learnable")


def build(impl: str, dim: int):
    if impl == "vqstack-vq":
        from vqstack.quantizers import VectorQuantizer
        return VectorQuantizer(dim=dim, codebook_size=NUM_CODES)
    if impl == "vqstack-ema":
        from vqstack.quantizers import EMAVectorQuantizer
        return EMAVectorQuantizer(dim=dim, codebook_size=NUM_CODES)
    from vector_quantize_pytorch import VectorQuantize
    if impl == "vqpytorch-ema":  # its defaults: EMA codebook (decay 0.8), rotation trick
        return VectorQuantize(dim=dim, codebook_size=NUM_CODES, accept_image_fmap=True)
    if impl == "vqpytorch-learnable":  # codebook trained by gradients, like our vq
        return VectorQuantize(dim=dim, codebook_size=NUM_CODES, accept_image_fmap=True,
                              learnable_codebook=True, ema_update=False)
    raise ValueError(f"unknown implementation {impl!r}; choose from {OURS + REFERENCES}")


def step(module, z: torch.Tensor) -> None:
    out = module(z)
    quantized, loss = (out.quantized, out.loss) if hasattr(out, "quantized") else (out[0], out[2])
    (quantized.square().mean() + loss.sum()).backward()
    z.grad = None
    for p in module.parameters():
        p.grad = None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def proc_status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def start_peak_rss() -> tuple[int, bool]:
    """Baseline for CPU peak memory. On Linux, reset the peak-RSS mark (VmHWM) to the current RSS, so import-time
    peaks do not hide the step's; elsewhere fall back to ru_maxrss."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return proc_status_bytes("VmRSS"), True
    except OSError:
        scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is bytes on macOS, KiB on Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale, False


def peak_rss_bytes(reset_worked: bool) -> int:
    if reset_worked:
        return proc_status_bytes("VmHWM")
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def run_case(impl: str, dim: int, device: str, reps: int) -> dict:
    """One case, in this process (called in a fresh subprocess by :func:`measure`)."""
    device = torch.device(device)
    torch.manual_seed(0)
    module = build(impl, dim).to(device).train()
    z = torch.randn(NUM_VECTORS // 1024, dim, 32, 32, device=device, requires_grad=True)
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    else:
        base, reset_worked = start_peak_rss()
    times = []
    for i in range(reps + 1):
        sync(device)
        start = time.perf_counter()
        step(module, z)
        sync(device)
        if i:  # the first step is the warm-up
            times.append(time.perf_counter() - start)
    peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda" else peak_rss_bytes(reset_worked)) - base
    # time_ms (median) is the headline; min_ms shows how far other load on the machine pushed the median
    return {"impl": impl, "dim": dim, "time_ms": round(1000 * statistics.median(times), 1),
            "min_ms": round(1000 * min(times), 1), "peak_mem_mb": round(peak / 2**20, 1)}


def measure(impl: str, dim: int, device: str, reps: int, quick: bool = False) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--case", f"{impl}:{dim}", "--device", device,
           "--reps", str(reps)] + (["--quick"] if quick else [])
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        return {"impl": impl, "dim": dim, "error": done.stderr.strip().splitlines()[-1:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def reference_available() -> str | None:
    try:
        import importlib.metadata
        import vector_quantize_pytorch  # noqa: F401
        return importlib.metadata.version("vector-quantize-pytorch")
    except Exception:
        return None


def ratios(results: list[dict]) -> list[dict]:
    rows = []
    for dim in DIMS:
        refs = [r for r in results if r["dim"] == dim and r["impl"] in REFERENCES and "error" not in r]
        if not refs:
            continue
        fastest = min(refs, key=lambda r: r["time_ms"])
        for r in results:
            if r["dim"] == dim and r["impl"] in OURS and "error" not in r:
                rows.append({"dim": dim, "ours": r["impl"], "reference": fastest["impl"],
                             "time_ratio": round(r["time_ms"] / fastest["time_ms"], 3),
                             "mem_ratio": round(r["peak_mem_mb"] / max(fastest["peak_mem_mb"], 1e-9), 3)})
    return rows


def sweep_chunks(device: str, reps: int) -> list[dict]:
    """Nearest-code search time per distance-block budget, to choose ``SEARCH_CHUNK_BYTES``."""
    from vqstack.quantizers.codebook import chunk_rows, nearest_codes

    rows = []
    for dim in DIMS:
        x = torch.randn(NUM_VECTORS, dim, device=device)
        codes = torch.randn(NUM_CODES, dim, device=device)
        for mb in (4, 8, 16, 32, 64, 1024):
            chunk = chunk_rows(NUM_CODES, mb * 2**20)
            times = []
            for i in range(reps + 1):
                sync(torch.device(device))
                start = time.perf_counter()
                nearest_codes(x, codes, chunk_size=chunk)
                sync(torch.device(device))
                times.append(time.perf_counter() - start)
            rows.append({"dim": dim, "chunk_mb": mb, "rows": chunk,
                         "time_ms": round(1000 * statistics.median(times[1:]), 1),
                         "min_ms": round(1000 * min(times[1:]), 1)})
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--reps", type=int, default=5, help="measured steps per case, after one warm-up")
    parser.add_argument("--json-out", help="also write the JSON to this file")
    parser.add_argument("--sweep-chunks", action="store_true", help="time the search per chunk size instead")
    parser.add_argument("--quick", action="store_true",
                        help="1,024 vectors against 1,024 codes and one rep: checks that every case runs")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: IMPL:DIM, run in this process
    args = parser.parse_args(argv)
    if args.quick:  # set here and in every case's subprocess (it gets --quick too)
        global NUM_VECTORS, NUM_CODES
        NUM_VECTORS = NUM_CODES = 1024
        args.reps = 1

    if args.case:
        impl, dim = args.case.split(":")
        print(json.dumps(run_case(impl, int(dim), args.device, args.reps)))
        return

    report = {"benchmark": "quantizer_speed", "device": args.device, "torch": torch.__version__,
              "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
              "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
              "vectors": NUM_VECTORS, "codes": NUM_CODES, "reps": args.reps, "quick": args.quick,
              "vector_quantize_pytorch": reference_available()}
    if args.sweep_chunks:
        report["chunk_sweep"] = sweep_chunks(args.device, args.reps)
    else:
        impls = OURS + (REFERENCES if report["vector_quantize_pytorch"] else ())
        report["results"] = [measure(impl, dim, args.device, args.reps, args.quick)
                             for dim in DIMS for impl in impls]
        report["ratios"] = ratios(report["results"])
    text = json.dumps(report, indent=2)
    print(text)
    if args.json_out:
        with open(args.json_out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
