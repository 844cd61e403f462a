"""Training throughput of the flagship recipe and the forward passes each step costs.

    python benchmarks/train_speed.py                      # base preset, 64x64, CPU
    python benchmarks/train_speed.py --mixed-precision bf16 --batch-size 32 --steps 20   # on a GPU

Runs recipes/vqgan_anime.py itself (through its train() function) with the discriminator starting half-way, counts
forward calls of the encoder, decoder, discriminator and perceptual network per optimizer step in each half (global
module forward hooks), times each step through the vqstack_on_step_end hook, and prints JSON.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "recipes"))
sys.path.insert(0, str(ROOT / "tests"))

import vqstack  # noqa: E402
from vqstack.autoencoders import Decoder, Encoder  # noqa: E402


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


class StepClock:
    """Observes steps through the public hook; records the time and forward counts at each step end."""

    def __init__(self, counts: Counter):
        self.counts, self.marks = counts, []

    @vqstack.hookimpl
    def vqstack_on_step_end(self, step, logs):
        self.marks.append((step, time.perf_counter(), Counter(self.counts)))


def per_step(marks, first: int, last: int) -> tuple[dict, float]:
    """Forward counts per step and seconds per step between steps ``first`` and ``last`` (both step ends)."""
    by_step = {step: (t, c) for step, t, c in marks}
    (t0, c0), (t1, c1) = by_step[first], by_step[last]
    n = last - first
    steps = [by_step[s + 1][0] - by_step[s][0] for s in range(first, last)]
    return {k: (c1[k] - c0[k]) / n for k in ("encoder", "decoder", "discriminator", "perceptual")}, \
        statistics.median(steps)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None, help="image folder (default: ../shared/data/anime-faces, else synthetic)")
    p.add_argument("--preset", default="base")
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--steps", type=int, default=8, help="optimizer steps per half (default: 8)")
    p.add_argument("--mixed-precision", default="no", choices=["no", "bf16", "fp16"])
    p.add_argument("--json-out", default=None)
    args = p.parse_args()

    from helpers.recipes import SHARED_DATA, write_image_folder
    import vqgan_anime

    counts = Counter()

    def count(module, inputs, output):
        name = role(module)
        if name:
            counts[name] += 1

    handle = torch.nn.modules.module.register_module_forward_hook(count)
    clock = StepClock(counts)
    vqstack.register_plugin(clock, name="train-speed-clock")
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or (str(SHARED_DATA / "anime-faces") if (SHARED_DATA / "anime-faces").is_dir()
                             else str(write_image_folder(Path(tmp) / "images", count=64, size=args.resolution)))
        total = 2 * args.steps + 2
        vqgan_anime.main([
            "--data", data, "--preset", args.preset, "--resolution", str(args.resolution),
            "--batch-size", str(args.batch_size), "--max-steps", str(total), "--disc-start", str(args.steps + 1),
            "--mixed-precision", args.mixed_precision, "--num-workers", "2", "--output-dir", str(Path(tmp) / "run"),
            "--log-every", str(total), "--eval-every", str(10 * total), "--sample-every", str(10 * total),
            "--checkpoint-every", str(10 * total),
        ])
    handle.remove()
    # steps 2..steps+1 run without the discriminator, steps+2..2*steps+2 with it (step 1 warms up)
    before, sec_before = per_step(clock.marks, 1, args.steps + 1)
    after, sec_after = per_step(clock.marks, args.steps + 2, total - 1)  # the last step also exports outputs
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({torch.get_num_threads()} threads)"
    result = {
        "benchmark": "train_speed", "device": device, "preset": args.preset, "resolution": args.resolution,
        "batch_size": args.batch_size, "mixed_precision": args.mixed_precision, "data": data,
        "images_per_sec_before_disc": args.batch_size / sec_before,
        "images_per_sec_with_disc": args.batch_size / sec_after,
        "forwards_per_step_before_disc": before,
        "forwards_per_step_with_disc": after,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json_out:
        Path(args.json_out).write_text(text + "\n")


if __name__ == "__main__":
    main()
