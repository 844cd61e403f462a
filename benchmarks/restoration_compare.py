"""Restoring degraded faces: the restorer against the obvious alternatives, on held-out anime faces. JSON.

Three fixed degradations (issue #11), each applied to the same held-out faces with per-face seeds:

- ``down4+noise``: bicubic down by 4 and back up, then Gaussian noise of std 0.05 ([0, 1] scale);
- ``blur2``: Gaussian blur, sigma 2 pixels;
- ``jpeg20``: JPEG at quality 20.

For each, five answers are scored against the clean face:

- ``degraded``: the damaged image itself (for ``down4+noise`` that is the bicubic upsampling of the small image,
  with the noise);
- ``tokenizer``: the plain tokenizer, encode then decode of the damaged image;
- ``restorer f=0`` / ``f=0.5`` / ``f=1``: the restorer at fidelity 0 (the predicted codes), 0.5 and 1 (the
  quantizer's own codes for the restorer's features), decoded by the same frozen tokenizer.

Metrics: PSNR and SSIM (pixels, higher is better), ST-LPIPS (VGG; shift-tolerant LPIPS with real ImageNet
weights, lower is closer), FD-VGG (Fréchet distance of ST-LPIPS VGG16 features of all restored faces against all
clean ones; not FID, and over a few hundred faces only its differences mean something). Every answer goes through
8 bits, as a saved image would. ``seconds_per_image``: the restorer's forward and decode, batched and one by one.

The faces are the last ``--faces`` of the folder, which ``recipes/restore_anime.py --eval-images N`` (N at least
``--faces``) holds out of training.

    python benchmarks/restoration_compare.py --tokenizer runs/tiny32-long/tokenizer \\
        --restorer runs/restore-anime/restorer --grid docs/images/restoration.png
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from PIL import Image

import vqstack
from vqstack.evaluation import build_suite
from vqstack.data.degradations import parse_spec
from vqstack.pipelines.images import from_pil, make_grid_image, to_pil
from vqstack.restorers.saving import load_restorer
from vqstack.restorers import blend_codes

CASES = {"down4+noise": "down:4,noise:0.05", "blur2": "blur:2", "jpeg20": "jpeg:20"}
FIDELITIES = (0.0, 0.5, 1.0)
METRICS = "psnr,ssim,stlpips,fd-vgg"


def held_out_faces(data: str, count: int, size: int) -> torch.Tensor:
    paths = sorted(p for p in Path(data).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[-count:]
    faces = [Image.open(p).convert("RGB").resize((size, size), Image.BICUBIC) for p in paths]
    return torch.cat([from_pil(face, (size, size)) for face in faces])


def eight_bit(images: torch.Tensor) -> torch.Tensor:
    return ((images.clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1


@torch.no_grad()
def restore(tokenizer, restorer, images: torch.Tensor, fidelity: float) -> torch.Tensor:
    return tokenizer.decode_codes(blend_codes(tokenizer, restorer(images), fidelity)).clamp(-1, 1)


@torch.no_grad()
def answers(tokenizer, restorer, degraded: torch.Tensor, batch: int) -> dict[str, torch.Tensor]:
    out = {"degraded": [], "tokenizer": [], **{f"restorer f={f:g}": [] for f in FIDELITIES}}
    for images in degraded.split(batch):
        out["degraded"].append(images)
        out["tokenizer"].append(tokenizer.decode(tokenizer.encode(images)))
        prediction = restorer(images)  # one forward, decoded at every fidelity
        for fidelity in FIDELITIES:
            latents = blend_codes(tokenizer, prediction, fidelity)
            out[f"restorer f={fidelity:g}"].append(tokenizer.decode_codes(latents).clamp(-1, 1))
    return {name: eight_bit(torch.cat(images)) for name, images in out.items()}


def clean_suite(clean: torch.Tensor, batch: int):
    """The metrics, with the clean faces' FD-VGG statistics computed once and kept across resets (they are the
    same for every answer; each VGG16 pass at 224x224 costs about a tenth of a second here)."""
    suite = build_suite(METRICS, sync_on_compute=False)
    for metric in suite.sets.values():
        metric.reset_real_features = False
    for real in clean.split(batch):
        suite.update_sets(real, real=True)
    return suite


def score(images: torch.Tensor, clean: torch.Tensor, suite, batch: int) -> dict:
    suite.reset()
    for fake, real in zip(images.split(batch), clean.split(batch)):
        suite.update_pairs(fake, real)
        suite.update_sets(fake, real=False)
    values = suite.compute()
    return {name: round(value, 4 if name in ("ssim", "stlpips") else 2) for name, value in values.items()}


def seconds_per_image(tokenizer, restorer, images: torch.Tensor, batch: int) -> dict:
    timings = {}
    for label, size in (("batched", batch), ("one_by_one", 1)):
        chunk = images[:max(size, 16)]
        restore(tokenizer, restorer, chunk[:size], 0.5)  # warm-up
        start = time.perf_counter()
        for b in chunk.split(size):
            restore(tokenizer, restorer, b, 0.5)
        timings[label] = round((time.perf_counter() - start) / len(chunk), 5)
    return timings


def save_grid(path: str, clean: torch.Tensor, results: dict, columns: int = 8) -> None:
    """One block per degradation: rows degraded, tokenizer, f=0, f=0.5, f=1, original; 8 faces, shown 2x."""
    rows = []
    for answers_of_case in results.values():
        rows += [answers_of_case[name][:columns] for name in answers_of_case] + [clean[:columns]]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    make_grid_image(to_pil(torch.cat(rows)), columns=columns, zoom=2).save(path)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--restorer", required=True, help="folder written by recipes/restore_anime.py (restorer/)")
    p.add_argument("--data", default="../shared/data/anime-faces")
    p.add_argument("--faces", type=int, default=200, help="the last N faces of --data (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--seed", type=int, default=0, help="seed of the degradations' draws (default: 0)")
    p.add_argument("--grid", default=None, help="write a grid here: degraded, tokenizer, f=0, f=0.5, f=1, original")
    p.add_argument("--json-out", default=None)
    args = p.parse_args(argv)

    torch.manual_seed(0)
    tokenizer = vqstack.Tokenizer.from_pretrained(args.tokenizer).eval()
    restorer, record = load_restorer(args.restorer, args.tokenizer)
    clean = held_out_faces(args.data, args.faces, restorer.image_size)
    suite = clean_suite(clean, args.batch_size)
    report = {"faces": len(clean), "image_size": restorer.image_size, "restorer": args.restorer,
              "trained_on": record.get("degradations"), "cases": {}}
    results = {}
    for case, spec in CASES.items():
        degradation = parse_spec(spec, seed=args.seed)
        degraded = eight_bit(torch.stack([degradation.sample(face, i) for i, face in enumerate(clean)]))
        results[case] = answers(tokenizer, restorer, degraded, args.batch_size)
        report["cases"][case] = {"spec": spec, **{name: score(images, clean, suite, args.batch_size)
                                                  for name, images in results[case].items()}}
    report["seconds_per_image"] = seconds_per_image(tokenizer, restorer, clean, args.batch_size)
    report["threads"] = torch.get_num_threads()
    if args.grid:
        save_grid(args.grid, clean, results)
        report["grid_file"] = args.grid
    text = json.dumps(report, indent=1)
    print(text)
    if args.json_out:
        Path(args.json_out).write_text(text + "\n")
    return report


if __name__ == "__main__":
    main()
