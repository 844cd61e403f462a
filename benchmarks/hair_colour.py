"""Do samples follow the requested hair colour? A colour check of a trained anime prior, printed as JSON.

Each face is described by the mean colour of its top third (mostly hair). Per hair colour, the centre of those
descriptions over the real tagged faces (the data's own metadata.jsonl, or --metadata) is the reference; a sample
counts as following its request when the nearest centre is the requested colour. The same rule applied to the real
faces, and to the same faces after the tokenizer (encode, decode), gives reference figures: guided samples, more
typical than real faces, can score above them. 1/colours is the chance level.

    python benchmarks/hair_colour.py --tokenizer runs/vqgan-anime/tokenizer --prior runs/prior-anime/prior \
        --data ../shared/data/anime-faces --n 64 --cfg-scale 1 3 --grid hair-rows.png

``--grid`` also saves the first ``--grid-columns`` samples of each colour at the last guidance scale, one row per
colour in the order of ``colours`` (alphabetical), the samples the figures were measured on.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vqstack import Pipeline
from vqstack.pipelines.images import from_pil, make_grid_image, to_pil


def describe(image: Image.Image) -> np.ndarray:
    """A face's hair colour, roughly: chromaticity and brightness of the mean colour of its top third."""
    top = np.asarray(image.convert("RGB").resize((24, 24), Image.BILINEAR), dtype=np.float32)[:8]
    colour = top.reshape(-1, 3).mean(0)
    return np.concatenate([colour / colour.sum(), colour / 255])


def hit_rates(predicted: np.ndarray, labels: np.ndarray, colours: list[str]) -> dict:
    """Share of faces whose nearest centre is their own colour: per colour, its mean over colours (every colour
    counts the same, as for the samples) and over faces (the common colours weigh more)."""
    per_colour = {colour: float((predicted[labels == c] == c).mean()) for c, colour in enumerate(colours)}
    return {"mean_over_colours": round(float(np.mean(list(per_colour.values()))), 3),
            "mean_over_faces": round(float((predicted == labels).mean()), 3),
            "per_colour": {k: round(v, 2) for k, v in per_colour.items()}}


def nearest(features: np.ndarray, centres: np.ndarray) -> np.ndarray:
    return ((features[:, None] - centres[None]) ** 2).sum(-1).argmin(1)


@torch.no_grad()
def reconstruct(pipe: Pipeline, paths: list[Path], batch: int = 256) -> list[Image.Image]:
    """The faces as the tokenizer gives them back (encode, decode) at its resolution."""
    out = []
    for start in range(0, len(paths), batch):
        images = torch.cat([from_pil(Image.open(path), pipe.image_size) for path in paths[start:start + batch]])
        out += to_pil(pipe.decode(pipe.tokenizer.encode(images)))
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--prior", required=True)
    p.add_argument("--data", default="../shared/data/anime-faces")
    p.add_argument("--metadata", default=None, help="tags to use instead of the data folder's metadata.jsonl")
    p.add_argument("--n", type=int, default=64, help="samples per hair colour")
    p.add_argument("--cfg-scale", type=float, nargs="+", default=[1.0, 3.0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--grid", default=None, help="save one row of samples per colour here (PNG)")
    p.add_argument("--grid-columns", type=int, default=8, help="samples per row of --grid")
    args = p.parse_args(argv)

    metadata = Path(args.metadata) if args.metadata else Path(args.data) / "metadata.jsonl"
    rows = [json.loads(line) for line in metadata.read_text().splitlines() if line.strip()]
    rows = [row for row in rows if row.get("hair")]
    colours = sorted({row["hair"] for row in rows})
    real = np.stack([describe(Image.open(Path(args.data) / row["file_name"])) for row in rows])
    labels = np.array([colours.index(row["hair"]) for row in rows])
    centres = np.stack([real[labels == c].mean(0) for c in range(len(colours))])
    pipe = Pipeline.from_pretrained(args.tokenizer, args.prior)
    paths = [Path(args.data) / row["file_name"] for row in rows]
    reconstructed = np.stack([describe(im) for im in reconstruct(pipe, paths)])
    report = {"colours": colours, "chance": round(1 / len(colours), 3), "tagged_faces": len(rows),
              "real_faces": hit_rates(nearest(real, centres), labels, colours),
              "reconstructed_faces": hit_rates(nearest(reconstructed, centres), labels, colours)}
    for scale in args.cfg_scale:
        predicted, requested, rows = [], [], []
        for c, colour in enumerate(colours):  # "<colour> hair" alone: the eyes are left to the prior
            images = pipe(args.n, labels=f"{colour} hair", cfg_scale=scale, seed=args.seed)
            rows += images[:args.grid_columns]
            predicted.append(nearest(np.stack([describe(im) for im in images]), centres))
            requested.append(np.full(args.n, c))
        report[f"samples_cfg_{scale:g}"] = hit_rates(np.concatenate(predicted), np.concatenate(requested), colours)
    if args.grid:
        make_grid_image(rows, columns=args.grid_columns).save(args.grid)
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
