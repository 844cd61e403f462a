"""Run every benchmark in benchmarks/ and rewrite docs/benchmarks.md from the results.

    python benchmarks/run_all.py                      # full size: benchmarks/results/ -> docs/benchmarks.md
    python benchmarks/run_all.py --quick              # smallest sizes, a smoke test: runs/benchmarks-quick(.md)
    python benchmarks/run_all.py --only sampling_speed,quantizer_shootout
    python benchmarks/run_all.py --tokenizer runs/tiny32-restarts/tokenizer --prior runs/prior-anime32/prior
    python benchmarks/run_all.py --render-only        # rewrite the page from the stored results

Each benchmark runs in its own process; what it prints as JSON is stored as ``<results-dir>/<name>.json``:
``{"benchmark", "command", "quick", "machine", "seconds", "result"}``, or ``"failed": {"returncode", "error",
"stderr"}`` instead of ``"result"`` when the script fails. ``machine`` (CPU, GPU, matmul throughput measured here,
versions, date, commit) is measured once per invocation, before the first benchmark. The page is rendered from every
result file present, so ``--only NAME`` updates those sections and keeps the others. A failure does not stop the
other benchmarks; the exit status is 1 when any failed. hair_colour, inpaint_candidates (``--tokenizer`` and
``--prior``) and tokenizer_eval (``--tokenizer``) need trained artifacts: without them they are skipped (an error
when named in ``--only``) and their stored results stay. The page text is in benchmarks/report.py.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import report  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ANIME, CIFAR = "../shared/data/anime-faces", "../shared/data/cifar10"  # relative to ROOT, where benchmarks run
PUBLISHED = ROOT / "docs" / "benchmarks.md"
VERSIONS = ("torch", "transformers", "accelerate", "torchmetrics", "vqstack", "vector-quantize-pytorch", "datasets")


@dataclass
class Benchmark:
    name: str  # the result file's name; --only takes it or the script's name
    script: str
    argv: list[str]  # after `python`
    json_flag: str | None  # the script's option to write its JSON; None: parsed from its stdout
    skip: str | None = None  # why it does not run this time


def benchmarks(args) -> list[Benchmark]:
    """Every benchmark with its arguments at full size or, with --quick, its smallest."""
    quick, device = args.quick, ["--device", args.device]
    cuda = args.device == "cuda"
    trained = ["--tokenizer", str(args.tokenizer), "--prior", str(args.prior)]
    no_trained = None if args.tokenizer and args.prior else "needs --tokenizer DIR --prior DIR (trained artifacts)"
    maskgit = getattr(args, "maskgit", None)
    restorer = getattr(args, "restorer", None)
    train = (["--preset", "tiny", "--resolution", "32", "--batch-size", "4", "--steps", "2"] if quick
             else ["--mixed-precision", "bf16", "--batch-size", "32", "--steps", "20"] if cuda else [])
    return [
        Benchmark("quantizer_speed", "quantizer_speed", ["benchmarks/quantizer_speed.py", *device]
                  + (["--quick"] if quick else ["--reps", "5"]), "--json-out"),
        Benchmark("quantizer_shootout_anime", "quantizer_shootout", ["benchmarks/quantizer_shootout.py", "--data",
                  ANIME, "--attribute", "hair"] + (["--quick"] if quick else []), "--json"),
        # --quick replaces --data with generated images, so a quick CIFAR-10 run would repeat the anime one
        Benchmark("quantizer_shootout_cifar10", "quantizer_shootout", ["benchmarks/quantizer_shootout.py", "--data",
                  CIFAR, "--attribute", "cls"], "--json",
                  skip="--quick trains on generated images whatever --data says: the anime run covers it"
                  if quick else None),
        Benchmark("colour_ablation", "colour_ablation", ["benchmarks/colour_ablation.py"]
                  + (["--steps", "2", "--variants", "baseline"] if quick else []), "--json"),
        Benchmark("equal_time", "equal_time", ["benchmarks/equal_time.py", "--entries", "small,small-f4,taming",
                  "--jobs", "2"] + (["--quick"] if quick else []), "--json"),
        Benchmark("train_speed", "train_speed", ["benchmarks/train_speed.py", *train], "--json-out"),
        Benchmark("sampling_speed", "sampling_speed", ["benchmarks/sampling_speed.py", *device]
                  + (["--quick"] if quick else []), "--json-out"),
        Benchmark("hair_colour", "hair_colour", ["benchmarks/hair_colour.py", *trained, "--data", ANIME]
                  + (["--n", "2"] if quick else []), None, skip=no_trained),
        Benchmark("tokenizer_eval", "tokenizer_eval", ["-m", "vqstack.cli", "eval", "--tokenizer", str(args.tokenizer),
                  "--data", ANIME, "--metrics", "psnr,colour-hist,attr:hair"]
                  + (["--limit", "64"] if quick else []), "--json",
                  skip=None if args.tokenizer else "needs --tokenizer DIR (a trained tokenizer)"),
        Benchmark("inpaint_candidates", "inpaint_candidates", ["benchmarks/inpaint_candidates.py", *trained,
                  "--data", ANIME] + (["--faces", "2", "--candidates", "1", "2"] if quick else []), None,
                  skip=no_trained),
        Benchmark("maskgit_sampling", "sampling_speed", ["benchmarks/sampling_speed.py", *device, "--maskgit-only",
                  "--reps", "1" if quick else "3"], "--json-out"),
        Benchmark("quality_time", "quality_time", [
                  "benchmarks/quality_time.py", *device, "--tokenizer", str(args.tokenizer), "--ar", str(args.prior),
                  "--maskgit", str(maskgit), "--data", ANIME]
                  + (["--quick"] if quick else ["--plot", f"docs/images/quality-time-{args.device}.png"]), "--json-out",
                  skip=no_trained or (None if maskgit else "needs --maskgit DIR (a trained maskgit prior)")),
        Benchmark("inpaint_maskgit_vs_ar", "inpaint_maskgit_vs_ar", [
                  "benchmarks/inpaint_maskgit_vs_ar.py", "--tokenizer", str(args.tokenizer), "--ar", str(args.prior),
                  "--maskgit", str(maskgit), "--data", ANIME]
                  + (["--faces", "2"] if quick else ["--grid", "docs/images/inpaint-ar-vs-maskgit.png"]), "--json-out",
                  skip=no_trained or (None if maskgit else "needs --maskgit DIR (a trained maskgit prior)")),
        Benchmark("restoration_compare", "restoration_compare", [
                  "benchmarks/restoration_compare.py", "--tokenizer", str(args.tokenizer), "--restorer",
                  str(restorer), "--data", ANIME]
                  + (["--faces", "4", "--batch-size", "2"] if quick else ["--grid", "docs/images/restoration.png"]),
                  "--json-out", skip=None if args.tokenizer and restorer else
                  "needs --tokenizer DIR --restorer DIR (a restorer trained for that tokenizer)"),
    ]


# --- the machine ------------------------------------------------------------------------------------------------


def describe_machine(device: str = "cpu", size: int = 2048) -> dict:
    """What the results were measured on, without the host name; the matmul throughput is measured now, so a page
    read later can tell a slow machine (or a loaded one) from a slow benchmark."""
    flops = {"float32": matmul_gflops(device, torch.float32, size)}
    if device.startswith("cuda"):
        flops["bfloat16"] = matmul_gflops(device, torch.bfloat16, size)
    commit, dirty = git_commit()
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_model(), "logical_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None, "device": device,
        "load_average": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "matmul_size": size, "matmul_gflops": flops,
        "versions": {"python": platform.python_version(), **{name: version(name) for name in VERSIONS}},
        "commit": commit, "dirty": dirty,
    }


def matmul_gflops(device: str, dtype: torch.dtype, size: int = 2048, reps: int = 5) -> float:
    """Best of ``reps`` square matmuls after two warm-ups (the best, because other load only ever slows it)."""
    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
    best = float("inf")
    for i in range(reps + 2):
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        if i >= 2:
            best = min(best, time.perf_counter() - start)
    return round(2 * size ** 3 / best / 1e9, 1)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def git_commit() -> tuple[str | None, bool]:
    """The short commit and whether tracked files differ from it (results of uncommitted code say so)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                capture_output=True, text=True, check=True).stdout
        return commit, bool(status.strip())
    except (OSError, subprocess.CalledProcessError):
        return None, False


# --- running ----------------------------------------------------------------------------------------------------


def run(bench: Benchmark, results_dir: Path, machine: dict, quick: bool) -> bool:
    """Run one benchmark and store its record (the failure, if it failed); True if it succeeded."""
    staging = results_dir / f".{bench.name}.out.json"  # the script's own JSON, wrapped below
    staging.unlink(missing_ok=True)
    command = [sys.executable, *bench.argv] + ([bench.json_flag, str(staging)] if bench.json_flag else [])
    print(f"== {bench.name}: {' '.join(command)}", flush=True)
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    tail = bytearray()  # stderr passes through as it comes (progress bars) and its end is kept for a failure
    echo = threading.Thread(target=tee, args=(process.stderr, tail))
    echo.start()
    stdout = process.stdout.read().decode(errors="replace")
    returncode = process.wait()
    echo.join()
    shown = ["python", *bench.argv] + ([bench.json_flag, f"{report.relative(results_dir)}/{bench.name}.json"]
                                       if bench.json_flag else [])
    record = {"benchmark": bench.name, "command": shown, "quick": quick, "machine": machine,
              "seconds": round(time.perf_counter() - start, 1)}
    try:
        if returncode:
            raise RuntimeError(f"exit status {returncode}")
        record["result"] = json.loads(staging.read_text()) if bench.json_flag else json_from_stdout(stdout)
    except (OSError, ValueError, RuntimeError) as err:
        lines = re.split(r"[\r\n]+", tail.decode(errors="replace"))
        record["failed"] = {"returncode": returncode, "error": str(err),
                            "stderr": [line for line in lines if line.strip()][-12:]}
    staging.unlink(missing_ok=True)
    (results_dir / f"{bench.name}.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"== {bench.name}: {'failed (' + record['failed']['error'] + ')' if 'failed' in record else 'done'} "
          f"in {record['seconds']:.0f} s", flush=True)
    return "failed" not in record


def tee(stream, tail: bytearray, keep: int = 32_768) -> None:
    """Copy ``stream`` to our stderr chunk by chunk (a progress bar's \\r updates stay one line) and keep its end."""
    while chunk := stream.read1(65_536):
        sys.stderr.buffer.write(chunk)
        sys.stderr.buffer.flush()
        tail += chunk
        del tail[:-keep]


def json_from_stdout(text: str) -> dict:
    """The JSON object a script prints last (anything printed before it, such as log lines, is skipped)."""
    starts = [i for i in range(len(text)) if text[i] == "{" and (i == 0 or text[i - 1] == "\n")]
    for start in reversed(starts):  # the last top-level object that parses to the end of the output
        try:
            return json.loads(text[start:])
        except ValueError:
            continue
    raise ValueError("no JSON object at the end of its stdout")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="every benchmark at its smallest size: a smoke test")
    p.add_argument("--only", default=None, help="comma-separated benchmark (or script) names; default: all")
    p.add_argument("--render-only", action="store_true", help="run nothing; rewrite the page from the results")
    p.add_argument("--results-dir", type=Path, default=None,
                   help="default: benchmarks/results, with --quick runs/benchmarks-quick")
    p.add_argument("--output", type=Path, default=None,
                   help="the page; default: docs/benchmarks.md, with --quick runs/benchmarks-quick.md")
    p.add_argument("--tokenizer", type=Path, default=None, help="a trained tokenizer (hair_colour, tokenizer_eval, "
                                                                  "inpaint_candidates)")
    p.add_argument("--prior", type=Path, default=None, help="a trained prior (hair_colour, inpaint_candidates)")
    p.add_argument("--maskgit", type=Path, default=None,
                   help="a trained maskgit prior on --tokenizer's tokens (inpaint_maskgit_vs_ar)")
    p.add_argument("--restorer", type=Path, default=None,
                   help="a restorer trained for --tokenizer (restoration_compare)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="where quantizer_speed, sampling_speed and the matmul run (default: cuda if present)")
    args = p.parse_args(argv)
    results_dir = args.results_dir or ROOT / ("runs/benchmarks-quick" if args.quick else "benchmarks/results")
    output = args.output or (ROOT / "runs/benchmarks-quick.md" if args.quick else PUBLISHED)
    # the scripts run in the repository root: the trained artifacts' paths from there (as the page shows them)
    args.tokenizer = args.tokenizer and Path(os.path.relpath(args.tokenizer.resolve(), ROOT))
    args.prior = args.prior and Path(os.path.relpath(args.prior.resolve(), ROOT))
    args.restorer = args.restorer and Path(os.path.relpath(args.restorer.resolve(), ROOT))
    results_dir = results_dir.resolve()

    failed = []
    if not args.render_only:
        results_dir.mkdir(parents=True, exist_ok=True)
        chosen, names = benchmarks(args), set()
        if args.only:
            names = set(args.only.split(","))
            unknown = names - {b.name for b in chosen} - {b.script for b in chosen}
            if unknown:
                p.error(f"unknown benchmarks {sorted(unknown)}; choose from {', '.join(b.name for b in chosen)}")
            chosen = [b for b in chosen if b.name in names or b.script in names]
        machine = describe_machine(args.device)
        print(f"machine: {json.dumps(machine)}", flush=True)
        for bench in chosen:
            if bench.skip:
                print(f"== {bench.name}: skipped, {bench.skip}", flush=True)
                if bench.name in names:  # asked for by name: the missing --tokenizer is an error
                    failed.append(f"{bench.name} (skipped)")
            elif not run(bench, results_dir, machine, args.quick):
                failed.append(bench.name)

    results = report.load_results(results_dir)
    if not results:  # never replace a page with one that has no numbers at all
        print(f"No results in {results_dir}: nothing to render.", file=sys.stderr)
        return 1
    if output.resolve() == PUBLISHED and any(record.get("quick") for record in results.values()):
        print(f"Not writing {PUBLISHED.relative_to(ROOT)}: {results_dir} holds --quick (smoke-test) results; "
              f"give another --output.", file=sys.stderr)
        return 1
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(report.render(results, results_dir, quick=args.quick))
    print(f"-> {output} ({len(results)} results)" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
