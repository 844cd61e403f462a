"""Quantizer shoot-out: the same small tokenizer trained with each quantizer on the same data, steps and seed, then
measured on the same held-out images. Prints one JSON object per quantizer and a summary.

    python benchmarks/quantizer_shootout.py --data ../shared/data/anime-faces --json anime.json
    python benchmarks/quantizer_shootout.py --data ../shared/data/cifar10 --attribute cls --json cifar.json
    python benchmarks/quantizer_shootout.py --quick      # a few steps on generated images: does every entry run?

Every entry trains recipes/vqgan_anime.py's tiny preset (32x32 images, f=4, 8x8 tokens, GAN and ST-LPIPS loss as
the preset sets them) with only the quantizer changed, all at 256 codes (FSQ 8x8x4, LFQ 8 bits). The reference,
``vqpytorch``, is vector-quantize-pytorch's VectorQuantize in the same tokenizer, with ``rotation_trick=False`` so
its gradients are the straight-through ones every other entry uses (its default is True; ``--rotation-trick``
turns it on and names it in the results). Metrics (vqstack.evaluation, ``--holdout`` images the runs never train
on): PSNR, SSIM, ST-LPIPS (VGG16), FD-VGG, colour-histogram distance, codebook usage and perplexity, seconds per
training step, and with ``--attribute`` the attribute classifier's accuracy on originals and reconstructions.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

import vqstack

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "recipes"))
sys.path.insert(0, str(ROOT / "tests"))

CODES = 256
RESTARTS = {"kmeans_init": True, "dead_code_threshold": 0.5}
CANDIDATES = {
    # restarts off explicitly: the tiny preset turns them on, and a config's kwargs merge into the preset's
    "vq": {"name": "vq", "kwargs": {"dim": 16, "codebook_size": CODES, "l2_normalize": True, "kmeans_init": False,
                                    "dead_code_threshold": 0.0}},
    "vq+restarts": {"name": "vq", "kwargs": {"dim": 16, "codebook_size": CODES, "l2_normalize": True, **RESTARTS}},
    "vq-dim8+restarts": {"name": "vq", "kwargs": {"dim": 8, "codebook_size": CODES, "l2_normalize": True,
                                                  **RESTARTS}},
    "ema+restarts": {"name": "ema", "kwargs": {"dim": 16, "codebook_size": CODES, **RESTARTS}},
    "fsq": {"name": "fsq", "kwargs": {"levels": [8, 8, 4]}},
    "lfq": {"name": "lfq", "kwargs": {"dim": 8}},
    "vqpytorch": {"name": "vqpytorch", "kwargs": {"dim": 16, "codebook_size": CODES}},
}
METRICS = ["psnr", "ssim", "stlpips", "fd-vgg", "colour-hist", "usage"]


class VQPytorch(vqstack.Quantizer):
    """vector-quantize-pytorch's VectorQuantize (its defaults: EMA codebook, decay 0.8) behind vqstack's
    quantizer interface, so it trains inside the same tokenizer as every other entry."""

    rotation_trick = False  # set by --rotation-trick before the runs

    def __init__(self, dim: int = 16, codebook_size: int = CODES):
        super().__init__()
        from vector_quantize_pytorch import VectorQuantize

        self.dim, self.codebook_size = dim, codebook_size
        self.vq = VectorQuantize(dim=dim, codebook_size=codebook_size, accept_image_fmap=True,
                                 rotation_trick=self.rotation_trick)

    def forward(self, z: torch.Tensor) -> vqstack.QuantizerOutput:
        quantized, indices, loss = self.vq(z)
        counts = torch.bincount(indices.flatten(), minlength=self.codebook_size).float()
        probs = counts / counts.sum()
        perplexity = torch.exp(-(probs * probs.clamp_min(1e-10).log()).sum())
        return vqstack.QuantizerOutput(quantized, indices, loss.sum(), {
            "perplexity": perplexity.item(), "usage": (counts > 0).float().mean().item()})

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        return self.vq.get_output_from_indices(indices)  # (B, D, H, W) with accept_image_fmap


class ReferencePlugin:
    @vqstack.hookimpl
    def vqstack_register_quantizers(self, registry):
        registry.register("vqpytorch", VQPytorch)


def train(name: str, args, workdir: Path, config: dict | None = None, preset: str = "tiny") -> tuple[Path, float]:
    """Train ``preset`` with this entry's quantizer (or with ``config``, any part of a preset, on top of it);
    returns the tokenizer folder and seconds per step."""
    from helpers.recipes import load_recipe, reset_accelerate

    config = {"tokenizer": {"quantizer": CANDIDATES[name]}} if config is None else config
    config_file = workdir / f"{name}.json"
    config_file.write_text(json.dumps({**config, "eval_size": args.holdout}))
    reset_accelerate()
    load_recipe("vqgan_anime").main([
        "--data", args.data, "--preset", preset, "--config", str(config_file), "--max-steps", str(args.steps),
        "--batch-size", str(args.batch_size), "--seed", str(args.seed), "--disc-start", str(args.steps // 2),
        "--eval-every", str(args.steps), "--sample-every", str(args.steps), "--checkpoint-every", str(args.steps),
        "--log-every", str(max(1, args.steps // 10)), "--output-dir", str(workdir / name)])
    rates = [json.loads(line).get("images_per_sec") for line in (workdir / name / "metrics.jsonl").open()]
    rates = [r for r in rates if r]  # the recipe's own timing of training steps (no set-up, eval or export)
    return workdir / name / "tokenizer", args.batch_size / (sum(rates) / len(rates))


def held_out(args) -> torch.Tensor:
    """The last --holdout images of --data, as the recipe holds them out (center crop, no flip)."""
    from vqstack.data import ImageDataset, load_image_dataset

    images = load_image_dataset(args.data)
    tail = ImageDataset(images.select(range(len(images) - args.holdout, len(images))), 32, random_flip=False)
    return torch.stack([tail[i]["pixel_values"] for i in range(len(tail))])


def measure(tokenizer_dir: Path, images: torch.Tensor, args) -> dict:
    from vqstack.evaluation import evaluate_tokenizer

    tokenizer = vqstack.Tokenizer.from_pretrained(tokenizer_dir)
    metrics = METRICS + ([f"attr:{args.attribute}"] if args.attribute else [])
    return evaluate_tokenizer(tokenizer, images.split(64), metrics, **attribute_options(args))


def attribute_options(args) -> dict:
    return {"data": args.data} if args.attribute else {}


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data/anime-faces", help="images, as the recipes take them")
    p.add_argument("--quantizers", default=",".join(CANDIDATES), help="comma-separated entries of CANDIDATES")
    p.add_argument("--steps", type=int, default=300, help="training steps per entry (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--holdout", type=int, default=512, help="last N images, never trained on, for the metrics")
    p.add_argument("--attribute", default=None, help="a tag column for the attribute classifier (hair, cls)")
    p.add_argument("--rotation-trick", action="store_true", help="the reference with its rotation trick on")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="write the results here too")
    p.add_argument("--quick", action="store_true", help="4 steps on generated images: a smoke test")
    args = p.parse_args(argv)
    names = args.quantizers.split(",")
    unknown = sorted(set(names) - set(CANDIDATES))
    if unknown:
        raise SystemExit(f"Unknown entries {unknown}; choose from {', '.join(CANDIDATES)}.")
    VQPytorch.rotation_trick = args.rotation_trick
    vqstack.register_plugin(ReferencePlugin(), name="shootout-reference")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if args.quick:
            from helpers.recipes import write_image_folder

            args.data = str(write_image_folder(workdir / "images", count=48, size=32))
            args.steps, args.batch_size, args.holdout, args.attribute = 4, 4, 8, None
        images = held_out(args)
        for name in names:
            tokenizer_dir, seconds = train(name, args, workdir)
            row = {"quantizer": name, **CANDIDATES[name], "seconds_per_step": round(seconds, 3),
                   **measure(tokenizer_dir, images, args)}
            if name == "vqpytorch":
                row["rotation_trick"] = args.rotation_trick
            print(json.dumps(row), flush=True)
            results.append(row)
            write_summary(args, results)  # after every entry: an interrupted shoot-out keeps what it measured
    return results


def write_summary(args, results: list[dict]) -> None:
    summary = {"data": args.data, "steps": args.steps, "batch_size": args.batch_size, "holdout": args.holdout,
               "seed": args.seed, "torch": torch.__version__, "threads": torch.get_num_threads(), "results": results}
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
