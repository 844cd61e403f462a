"""Does best-of-N inpainting (``candidates``) fit the kept image better? Printed as JSON.

Anime faces the prior recipe held out (its --val-fraction 0.01 / --val-seed 0 split) get a square hole in the middle of the token grid, and the trained prior fills it with 1, 4
and 8 candidates (the best by the likelihood of the known tokens after the hole). Reported per setting, averaged
over the faces:
- ``st_lpips``: ST-LPIPS (VGG) between the repaired face and the original (lower is closer);
- ``edge_l1``: mean absolute pixel difference to the original in the hole's last token row and column, the cells
  that meet the kept image below and to the right, where raster-order sampling has seen nothing of what follows.
A fill is not a reconstruction, so neither reaches 0; lower means the fill agrees better with the face around it.

    python benchmarks/inpaint_candidates.py --tokenizer runs/tiny32-restarts/tokenizer \\
        --prior runs/prior-anime32/prior --data ../shared/data/anime-faces --faces 64
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import vqstack
from vqstack import Pipeline
from vqstack.pipelines.images import from_pil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes"))
from prior_anime import split_validation  # noqa: E402  (the recipe's own held-out split)


def hole_mask(pipe: Pipeline, first: int, last: int) -> tuple[Image.Image, torch.Tensor]:
    """A white square over token rows and columns first..last, and the (H, W) bool of its last row and column."""
    f = pipe.tokenizer.downsample
    h, w = pipe.image_size
    mask = np.zeros((h, w), dtype=np.uint8)
    mask[first * f:(last + 1) * f, first * f:(last + 1) * f] = 255
    edge = torch.zeros(h, w, dtype=torch.bool)
    edge[last * f:(last + 1) * f, first * f:(last + 1) * f] = True
    edge[first * f:(last + 1) * f, last * f:(last + 1) * f] = True
    return Image.fromarray(mask), edge


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--prior", required=True)
    p.add_argument("--data", default="../shared/data/anime-faces")
    p.add_argument("--faces", type=int, default=64, help="how many of the held-out faces")
    p.add_argument("--candidates", type=int, nargs="+", default=[1, 4, 8])
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    pipe = Pipeline.from_pretrained(args.tokenizer, args.prior)
    first, last = pipe.grid[0] // 4, pipe.grid[0] - pipe.grid[0] // 4 - 1  # the middle half of the grid
    mask, edge = hole_mask(pipe, first, last)
    paths = sorted(Path(args.data).glob("*.jpg"))  # imagefolder's order, so row i of the token set is paths[i]
    paths = [paths[i] for i in split_validation(len(paths), 0.01, 0)[1][:args.faces].tolist()]
    stlpips = vqstack.build("perceptual", "stlpips")
    report = {"faces": len(paths), "image_size": list(pipe.image_size), "hole_tokens": (last - first + 1) ** 2}
    for n in args.candidates:
        distances, edges = [], []
        for i, path in enumerate(paths):
            image = Image.open(path).convert("RGB").resize(pipe.image_size[::-1], Image.BICUBIC)
            original = from_pil(image, pipe.image_size)
            repaired = from_pil(pipe.inpaint(image, mask, seed=args.seed + i, candidates=n), pipe.image_size)
            with torch.no_grad():
                distances.append(stlpips(repaired, original).item())
            edges.append((repaired - original).abs().mean(1)[0][edge].mean().item() * 127.5)
        report[f"candidates_{n}"] = {"st_lpips": round(float(np.mean(distances)), 4),
                                     "edge_l1": round(float(np.mean(edges)), 2)}
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
