"""What makes a tokenizer lose hair colour? The tiny preset trained with one thing changed at a time (same data,
steps and seed), each scored by the hair-colour classifier per class, PSNR and codebook usage.

    python benchmarks/colour_ablation.py --steps 600 --json runs/colour-ablation.json
    python benchmarks/colour_ablation.py --variants baseline,groups-1 --steps 300

The baseline is the tiny preset with k-means init and dead-code restarts (issue 8 showed them necessary and not
sufficient). Each variant changes one suspect: GroupNorm groups (32 groups of the tiny net's 32 channels are one
channel each, an InstanceNorm that removes every channel's per-image mean), codebook size and code dimension,
encoder width, the reconstruction loss. Prints one JSON line per variant; ``worst_ratio`` is the smallest
recon/real accuracy over the classes with at least 1 % of the tagged images (the presets' bar is 0.9).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

import vqstack

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quantizer_shootout import RESTARTS, held_out, train  # noqa: E402
from vqstack.training.config import deep_merge  # noqa: E402

BASE_QUANTIZER = {"name": "vq", "kwargs": {"dim": 16, "codebook_size": 256, "l2_normalize": True, **RESTARTS}}


def nets(**kwargs) -> dict:
    """The same change to the encoder and the decoder."""
    return {"tokenizer": {"encoder": {"name": "conv", "kwargs": kwargs}, "decoder": {"name": "conv", "kwargs": kwargs}}}


def quantizer(**kwargs) -> dict:
    return {"tokenizer": {"quantizer": {"name": "vq", "kwargs": kwargs}}}


# The tiny preset as it was before this study (taming's 32 GroupNorm groups, RGB losses only) with restarts on;
# spelled out so the study means the same whatever the preset ships today.
BASELINE = deep_merge(nets(norm_groups=32), {"tokenizer": {"quantizer": BASE_QUANTIZER, "colour": None}})
VARIANTS = {
    "baseline": {},
    "groups-8": nets(norm_groups=8),
    "groups-1": nets(norm_groups=1),
    "codes-1024-dim8": quantizer(codebook_size=1024, dim=8),
    "codes-4096-dim8": quantizer(codebook_size=4096, dim=8),
    "width-64": nets(ch=64),
    "l2-loss": {"loss": {"reconstruction": "l2"}},
    "whiten": {"tokenizer": {"colour": "whiten"}},
    "groups-1+whiten": deep_merge(nets(norm_groups=1), {"tokenizer": {"colour": "whiten"}}),
}


def variant_config(name: str) -> dict:
    return deep_merge(BASELINE, VARIANTS[name])


def measure(tokenizer_dir: Path, images: torch.Tensor, args, classifier_dir: Path) -> dict:
    """PSNR, usage and colour-histogram distance on the held-out images; the hair classifier (trained once, shared
    by every variant) on the tagged held-out split, overall and per colour (real -> reconstructed accuracy)."""
    from vqstack.evaluation import evaluate_tokenizer
    from vqstack.evaluation.attributes import attribute_fidelity

    tokenizer = vqstack.Tokenizer.from_pretrained(tokenizer_dir)
    values = evaluate_tokenizer(tokenizer, images.split(64), ["psnr", "usage", "colour-hist"])
    report = attribute_fidelity(tokenizer, args.data, "hair", cache_dir=classifier_dir)
    per_colour = {name: f"{c['real']:.2f}->{c['recon']:.2f}" for name, c in report.per_class.items()}
    return {**values, **report.values, "hair": per_colour}


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data/anime-faces", help="a tagged image folder (hair column)")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated entries of VARIANTS")
    p.add_argument("--steps", type=int, default=600, help="training steps per variant (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--holdout", type=int, default=256, help="last N images, never trained on, for PSNR/usage")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default=None, help="keep the trained tokenizers here (default: a temporary folder)")
    p.add_argument("--json", default=None, help="write the results here too")
    args = p.parse_args(argv)
    names = args.variants.split(",")
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"Unknown variants {unknown}; choose from {', '.join(VARIANTS)}.")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.workdir or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        images = held_out(args)
        for name in names:
            tokenizer_dir, seconds = train(name, args, workdir, config=variant_config(name))
            row = {"variant": name, "change": VARIANTS[name], "seconds_per_step": round(seconds, 3),
                   **measure(tokenizer_dir, images, args, workdir / "classifier")}
            print(json.dumps(row), flush=True)
            results.append(row)
    if args.json:
        Path(args.json).write_text(json.dumps({"data": args.data, "steps": args.steps, "batch_size": args.batch_size,
                                               "seed": args.seed, "torch": torch.__version__,
                                               "results": results}, indent=1))
    return results


if __name__ == "__main__":
    main()
