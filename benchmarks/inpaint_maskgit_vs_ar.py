"""Repairing the hair: ar (raster order) against maskgit (every side as context) on held-out anime faces. JSON.

Faces the prior recipe held out (its --val-fraction 0.01 / --val-seed 0 split) lose the top third of their token
grid (the hair); each prior fills it, unconditioned (null labels: what is measured is how the fill uses the face
around it), one sample per face with the same seed, and ``Pipeline.inpaint`` pastes the original back below. An
autoregressive prior draws the hole first and sees nothing of the face under it; maskgit sees the whole kept face
in every pass. Reported per prior, and for scale for the whole face through the tokenizer (encode, decode: every
pixel changes, where a repair changes only the top third):

- ``st_lpips``: ST-LPIPS (VGG) between the repaired face and the original, mean over faces (lower is closer);
- ``seam_l1``: mean absolute pixel difference (0-255) to the original in the hole's last token row, the cells that
  meet the kept face below;
- ``fd_vgg``: FD-VGG between the repaired faces and the originals (ST-LPIPS VGG16 features; not FID);
- ``seconds_per_face``: inpainting time on this machine.

    python benchmarks/inpaint_maskgit_vs_ar.py --tokenizer runs/tiny32-long/tokenizer \\
        --ar runs/prior-long/prior --maskgit runs/maskgit-long/prior --grid docs/images/inpaint-ar-vs-maskgit.png
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import vqstack
from vqstack.evaluation.generation import evaluate_samples
from vqstack import Pipeline
from vqstack.pipelines.images import from_pil, make_grid_image, to_pil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes"))
from prior_anime import split_validation  # noqa: E402  (the recipe's own held-out split)


def top_third_mask(pipe: Pipeline) -> tuple[Image.Image, int]:
    """White over the top round(h/3) token rows; returns the mask and the number of masked rows."""
    f, (h, w) = pipe.tokenizer.downsample, pipe.image_size
    rows = round(pipe.grid[0] / 3)
    mask = np.zeros((h, w), dtype=np.uint8)
    mask[:rows * f] = 255
    return Image.fromarray(mask), rows


def held_out_faces(data: str, count: int) -> list[Image.Image]:
    paths = sorted(Path(data).glob("*.jpg"))  # imagefolder's order: row i of the prior's token set is paths[i]
    rows = split_validation(len(paths), 0.01, 0)[1][:count].tolist()
    return [Image.open(paths[i]).convert("RGB") for i in rows]


def repair_all(pipe: Pipeline, faces: list[Image.Image], mask: Image.Image, seed: int) -> tuple[torch.Tensor, float]:
    start = time.perf_counter()
    repaired = torch.cat([from_pil(pipe.inpaint(face, mask, seed=seed + i), pipe.image_size)
                          for i, face in enumerate(faces)])
    return repaired, (time.perf_counter() - start) / len(faces)


def scores(repaired: torch.Tensor, originals: torch.Tensor, seam: slice, stlpips) -> dict:
    with torch.no_grad():
        distance = torch.cat([stlpips(r, o) .reshape(-1) for r, o in zip(repaired.split(32), originals.split(32))])
    seam_l1 = (repaired - originals)[..., seam, :].abs().mean() * 127.5
    fd = evaluate_samples(repaired.split(64), originals.split(64), metrics="fd-vgg")["fd-vgg"]
    return {"st_lpips": round(distance.mean().item(), 4), "seam_l1": round(seam_l1.item(), 2), "fd_vgg": round(fd, 1)}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--ar", required=True, help="folder of a trained ar prior")
    p.add_argument("--maskgit", required=True, help="folder of a trained maskgit prior (same tokenizer)")
    p.add_argument("--data", default="../shared/data/anime-faces")
    p.add_argument("--faces", type=int, default=200, help="how many of the held-out faces (default: all 200)")
    p.add_argument("--steps", type=int, default=None, help="maskgit's decoding passes (default: its own)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--grid", default=None, help="write a grid here: original, hole, ar, maskgit rows of 8 faces")
    p.add_argument("--json-out", default=None)
    args = p.parse_args(argv)

    pipes = {"ar": Pipeline.from_pretrained(args.tokenizer, args.ar),
             "maskgit": Pipeline.from_pretrained(args.tokenizer, args.maskgit)}
    size, f = pipes["ar"].image_size, pipes["ar"].tokenizer.downsample
    mask, rows = top_third_mask(pipes["ar"])
    # at the pipeline's size, as the mask: the repaired faces are compared at that size
    faces = [face.resize(size[::-1], Image.BICUBIC) for face in held_out_faces(args.data, args.faces)]
    originals = torch.cat([from_pil(face, size) for face in faces])
    seam = slice((rows - 1) * f, rows * f)
    stlpips = vqstack.build("perceptual", "stlpips", net="vgg").eval()
    report = {"faces": len(faces), "image_size": list(size), "masked_token_rows": rows, "grid": list(pipes["ar"].grid)}
    with torch.no_grad():
        recon = torch.cat([pipes["ar"].tokenizer(batch).recon.clamp(-1, 1) for batch in originals.split(64)])
    recon = torch.cat([from_pil(image, size) for image in to_pil(recon)])  # through 8 bits, as the repairs are
    report["whole face through the tokenizer"] = scores(recon, originals, seam, stlpips)
    repaired = {}
    for name, pipe in pipes.items():
        if name == "maskgit" and args.steps:
            pipe.inpaint = (lambda inpaint: lambda *a, **k: inpaint(*a, steps=args.steps, **k))(pipe.inpaint)
        repaired[name], per_face = repair_all(pipe, faces, mask, args.seed)
        report[name] = {**scores(repaired[name], originals, seam, stlpips), "seconds_per_face": round(per_face, 3)}
    if args.grid:
        holes = originals.clone()
        holes[..., :rows * f, :] = 0  # grey where the prior draws
        picked = [torch.cat([originals[i:i + 1], holes[i:i + 1], repaired["ar"][i:i + 1],
                             repaired["maskgit"][i:i + 1]]) for i in range(min(8, len(faces)))]
        rows_of_grid = torch.stack(picked, 1).flatten(0, 1)  # original row, hole row, ar row, maskgit row
        Path(args.grid).parent.mkdir(parents=True, exist_ok=True)
        make_grid_image([im.resize((64, 64), Image.NEAREST) for im in to_pil(rows_of_grid)], columns=len(picked)
                        ).save(args.grid)
        report["grid_file"] = args.grid
    text = json.dumps(report, indent=1)
    print(text)
    if args.json_out:
        Path(args.json_out).write_text(text + "\n")
    return report


if __name__ == "__main__":
    main()
