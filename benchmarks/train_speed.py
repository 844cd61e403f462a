"""Training throughput of the flagship recipe, the forward passes each step costs, and what each speed option buys.

    python benchmarks/train_speed.py                      # base preset, 64x64, CPU
    python benchmarks/train_speed.py --presets tiny,small,base \
        --variants baseline,channels_last,bf16,bf16+channels_last,compile,workers0
    python benchmarks/train_speed.py --mixed-precision bf16 --batch-size 32 --steps 20   # on a GPU

Runs recipes/vqgan_anime.py itself (through its main() function) once per preset and variant, all in one process,
with the discriminator starting half-way. For each run it counts forward calls of the encoder, decoder,
discriminator and perceptual network per optimizer step in each half (global module forward hooks), times each step
through the vqstack_on_step_end hook, and measures how long the loop waits for the data loader's next batch. A
variant is one of VARIANTS or several joined by "+" (later ones win); each run's images/s is also given as a ratio
to the same preset's baseline from the same invocation: on a shared machine absolute rates move with the load,
ratios much less (--repeats interleaves the runs and keeps each one's best). Prints JSON; the first run's numbers
also sit at the top level, under the keys this script has always written.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "recipes"))
sys.path.insert(0, str(ROOT / "tests"))

import vqstack  # noqa: E402
from vqstack.autoencoders import Decoder, Encoder  # noqa: E402

NETWORKS = ("encoder", "decoder", "discriminator", "perceptual")
EVAL_SIZE = 8  # held-out images of the final evaluation, which is not timed (the presets' 256 take minutes on base)
PHASES = ("before_disc", "with_disc")

# name -> (recipe options, --config contents or None); each is measured against the run without it
VARIANTS = {
    "baseline": ([], None),
    "channels_last": (["--channels-last"], None),
    "bf16": (["--mixed-precision", "bf16"], None),
    "fp32": (["--mixed-precision", "no"], None),  # for a run whose --mixed-precision is bf16 (a GPU)
    "compile": (["--compile"], None),
    "workers0": (["--num-workers", "0"], None),  # decoding in the training process
    "workers1": (["--num-workers", "1"], None),
    "alex": ([], {"perceptual": {"name": "stlpips", "kwargs": {"net": "alex"}}}),
    "vgg": ([], {"perceptual": {"name": "stlpips", "kwargs": {"net": "vgg"}}}),
    "no_perceptual": (["--perceptual-weight", "0"], None),
}


def role(module) -> str | None:
    """Which counted network a module is, by the registry kind it was built as (or its class)."""
    if isinstance(module, Encoder):
        return "encoder"
    if isinstance(module, Decoder):
        return "decoder"
    spec = vqstack.component_spec(module)
    if spec and spec["kind"] in ("discriminator", "perceptual"):
        return spec["kind"]
    return None


class DataWait:
    """Seconds the training process spends getting batches: making a data loader iterator (starting its workers)
    and each ``next`` (decoding with --num-workers 0, waiting for a worker otherwise)."""

    def __init__(self):
        self.seconds, self.patched = 0.0, []

    def timed(self, function):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start
        return wrapper

    def __enter__(self) -> "DataWait":
        from torch.utils.data import dataloader

        for cls, name in ((dataloader._BaseDataLoaderIter, "__next__"),
                          (dataloader._SingleProcessDataLoaderIter, "__init__"),
                          (dataloader._MultiProcessingDataLoaderIter, "__init__")):
            original = cls.__dict__[name]
            self.patched.append((cls, name, original))
            setattr(cls, name, self.timed(original))
        return self

    def __exit__(self, *exc) -> None:
        for cls, name, original in reversed(self.patched):
            setattr(cls, name, original)


class StepClock:
    """Observes a run through the public hooks: its start, and at each step end the time, the forward counts and
    the data wait so far."""

    def __init__(self, counts: Counter, wait: DataWait):
        self.counts, self.wait = counts, wait
        self.start, self.marks = None, []

    def reset(self) -> None:
        self.counts.clear()
        self.start, self.marks = None, []

    @vqstack.hookimpl
    def vqstack_on_train_start(self, config, accelerator):
        self.start = time.perf_counter()

    @vqstack.hookimpl
    def vqstack_on_step_end(self, step, logs):
        self.marks.append((step, time.perf_counter(), Counter(self.counts), self.wait.seconds))


def per_step(marks, first: int, last: int) -> tuple[dict, float, float]:
    """Between the ends of steps ``first`` and ``last``: forward counts per step, the median seconds per step and
    the share of the time spent waiting for data."""
    by_step = {step: (t, c, w) for step, t, c, w in marks}
    (t0, c0, w0), (t1, c1, w1) = by_step[first], by_step[last]
    n = last - first
    steps = [by_step[s + 1][0] - by_step[s][0] for s in range(first, last)]
    return {k: (c1[k] - c0[k]) / n for k in NETWORKS}, statistics.median(steps), (w1 - w0) / max(t1 - t0, 1e-9)


def variant_options(name: str) -> tuple[list[str], dict]:
    """The recipe options and config of a variant ("bf16+channels_last" joins two; later options win)."""
    from vqstack.training.config import deep_merge

    argv, config = [], {}
    for part in name.split("+"):
        if part not in VARIANTS:
            raise SystemExit(f"Unknown variant {part!r}; choose from {', '.join(VARIANTS)} (join with '+').")
        options, extra = VARIANTS[part]
        argv += options
        config = deep_merge(config, extra or {})
    return argv, config


def one_run(recipe, clock: StepClock, args, preset: str, variant: str, data: str, workdir: Path) -> dict:
    """Train ``2 * steps + 2`` steps of ``preset`` with ``variant``'s options; its timings and forward counts."""
    from helpers.recipes import reset_accelerate
    from vqstack.training.config import PRESETS

    options, config = variant_options(variant)
    resolution = args.resolution or PRESETS[preset]["resolution"]
    total = 2 * args.steps + 2
    run_dir = workdir / f"{preset}-{variant}"
    (workdir / "variant.json").write_text(json.dumps({"eval_size": EVAL_SIZE, **config}))
    clock.reset()
    reset_accelerate()
    try:
        result = recipe.main([
            "--data", data, "--preset", preset, "--resolution", str(resolution), "--batch-size", str(args.batch_size),
            "--max-steps", str(total), "--disc-start", str(args.steps + 1), "--mixed-precision", args.mixed_precision,
            "--num-workers", str(args.num_workers), "--output-dir", str(run_dir), "--log-every", str(total),
            "--eval-every", str(10 * total), "--sample-every", str(10 * total), "--checkpoint-every", str(10 * total),
            "--config", str(workdir / "variant.json"), *options])
    finally:
        if "--compile" in options:
            torch._dynamo.reset()  # the next run compiles its own networks
    marks = {step: t for step, t, _, _ in clock.marks}
    # steps 2..steps+1 run without the discriminator, steps+3..2*steps+1 with it (steps 1 and steps+2 warm up, and
    # compile with --compile; the last also exports)
    before, sec_before, wait_before = per_step(clock.marks, 1, args.steps + 1)
    after, sec_after, wait_after = per_step(clock.marks, args.steps + 2, total - 1)
    perceptual = result["config"]["perceptual"] if result["config"]["loss"]["perceptual"] > 0 else None
    return {
        "preset": preset, "variant": variant, "options": options, "config": config or None, "resolution": resolution,
        "perceptual": perceptual and " ".join([perceptual["name"], *map(str, perceptual.get("kwargs", {}).values())]),
        "images_per_sec_before_disc": args.batch_size / sec_before,
        "images_per_sec_with_disc": args.batch_size / sec_after,
        "data_wait_share_before_disc": wait_before, "data_wait_share_with_disc": wait_after,
        "first_step_seconds": marks[1] - clock.start,
        "first_disc_step_seconds": marks[args.steps + 2] - marks[args.steps + 1],
        "forwards_per_step_before_disc": before, "forwards_per_step_with_disc": after,
    }


def best_of(runs: list[dict]) -> dict:
    """One (preset, variant)'s repeats: the fastest of each phase, the others' rates kept in ``repeats``; the first
    error when every repeat failed."""
    runs = [run for run in runs if "error" not in run] or runs[:1]
    if "error" in runs[0]:
        return dict(runs[0])
    best = dict(runs[0])
    for phase in PHASES:
        key = f"images_per_sec_{phase}"
        fastest = max(runs, key=lambda run: run[key])
        best[key], best[f"data_wait_share_{phase}"] = fastest[key], fastest[f"data_wait_share_{phase}"]
    if len(runs) > 1:
        best["repeats"] = [{f"images_per_sec_{p}": run[f"images_per_sec_{p}"] for p in PHASES} for run in runs]
    return best


def add_ratios(runs: list[dict]) -> None:
    """Each run's images/s over its preset's baseline (same invocation), when the baseline ran."""
    baselines = {run["preset"]: run for run in runs if run["variant"] == "baseline" and "error" not in run}
    for run in runs:
        base = baselines.get(run["preset"])
        for phase in PHASES:
            key = f"images_per_sec_{phase}"
            run[f"ratio_{phase}"] = run[key] / base[key] if base and key in run else None


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None, help="image folder (default: ../shared/data/anime-faces, else synthetic)")
    p.add_argument("--presets", "--preset", default="base", help="comma-separated presets (default: base)")
    p.add_argument("--variants", default="baseline",
                   help=f"comma-separated variants, each one of {', '.join(VARIANTS)} or several joined by '+' "
                        f"(default: baseline)")
    p.add_argument("--resolution", type=int, default=None, help="image size (default: each preset's)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--steps", type=int, default=8, help="optimizer steps per half (default: 8)")
    p.add_argument("--repeats", type=int, default=1,
                   help="run every preset and variant this many times, interleaved, keeping each one's fastest")
    p.add_argument("--mixed-precision", default="no", choices=["no", "bf16", "fp16"], help="the baseline's")
    p.add_argument("--num-workers", type=int, default=2, help="the baseline's data loader workers (the recipe's 2)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--json-out", default=None)
    args = p.parse_args(argv)
    args.presets = [name for name in args.presets.split(",") if name]
    args.variants = [name for name in args.variants.split(",") if name]
    from vqstack.training.config import PRESETS

    unknown = [name for name in args.presets if name not in PRESETS]
    if unknown:
        p.error(f"unknown preset(s) {', '.join(unknown)}; choose from {', '.join(PRESETS)}")
    for name in args.variants:
        variant_options(name)  # an unknown name stops here, before anything trains
    if args.steps < 2 or args.repeats < 1:
        p.error("--steps needs at least 2 (one warm-up step per half) and --repeats at least 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from helpers.recipes import SHARED_DATA, write_image_folder
    import vqgan_anime

    counts = Counter()

    def count(module, inputs, output):
        name = role(module)
        if name:
            counts[name] += 1

    load_before = os.getloadavg()[0]
    handle = torch.nn.modules.module.register_module_forward_hook(count)
    runs: dict[tuple[str, str], list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp, DataWait() as wait:
        clock = StepClock(counts, wait)
        vqstack.register_plugin(clock, name="train-speed-clock")
        size = args.resolution or 64
        data = args.data or (str(SHARED_DATA / "anime-faces") if (SHARED_DATA / "anime-faces").is_dir()
                             else str(write_image_folder(Path(tmp) / "images", count=64, size=size)))
        try:
            for _ in range(args.repeats):
                for preset in args.presets:
                    for variant in args.variants:
                        try:
                            run = one_run(vqgan_anime, clock, args, preset, variant, data, Path(tmp))
                        except Exception as err:  # one broken option must not hide the others' numbers
                            traceback.print_exc()
                            run = {"preset": preset, "variant": variant,
                                   "error": f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"}
                        runs.setdefault((preset, variant), []).append(run)
        finally:
            vqstack.unregister_plugin("train-speed-clock")
            handle.remove()
    results = [best_of(repeats) for repeats in runs.values()]
    add_ratios(results)
    first = next((r for r in results if r["variant"] == "baseline" and "error" not in r),
                 next((r for r in results if "error" not in r), results[0]))
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({torch.get_num_threads()} threads)"
    result = {
        "benchmark": "train_speed", "device": device, "preset": first["preset"],
        "resolution": first.get("resolution"), "batch_size": args.batch_size,
        "mixed_precision": args.mixed_precision, "num_workers": args.num_workers, "data": data,
        "steps": args.steps, "repeats": args.repeats, "threads": torch.get_num_threads(),
        "load_average_before": load_before, "load_average_after": os.getloadavg()[0],
        **{key: first.get(key) for key in ("images_per_sec_before_disc", "images_per_sec_with_disc",
                                            "forwards_per_step_before_disc", "forwards_per_step_with_disc")},
        "runs": results,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json_out:
        Path(args.json_out).write_text(text + "\n")
    return result


if __name__ == "__main__":
    main()
