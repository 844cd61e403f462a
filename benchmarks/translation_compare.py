"""Line art -> anime face: the translator (tags off/on, reference off/on) against a pix2pix baseline, on held-out
faces; and re-styling a face (``edit``) per strength. Printed as JSON, with a grid.

Faces: the last ``--faces`` images of ``--data``, which ``recipes/translate_anime.py --eval-images N`` and
``benchmarks/pix2pix.py --eval-images N`` (N at least ``--faces``) both hold out of training. Two kinds of line art
are made from each face:

- ``lineart``: the ``lineart`` condition's own first draw for that face (XDoG or Sobel, random style): the training
  filter, on faces it never saw;
- ``pil-edges``: line art made another way, which neither model trained on: PIL's FIND_EDGES (a 3x3 Laplacian)
  on the smoothed grey face, thresholded to black lines on white.

Answers, each one sample per face (seeded):

- ``translator``: no tags, no reference; guidance on the image (``--cfg-scale``);
- ``translator+tags``: "<colour> hair" requested, the colours taken in turn (face i asks for colour i mod 12), so
  most requests differ from the true face: its hit rate is the point, not its PSNR;
- ``translator+reference``: another held-out face (the next one) as the reference;
- ``translator+tags+reference``: both, the tag asking for the reference's own hair colour (as classified);
- ``pix2pix``: the baseline's generator with its dropout on (pix2pix's only noise);
- ``tokenizer``: the true face encoded and decoded: the ceiling of any answer drawn by this tokenizer.

Metrics: PSNR, SSIM, ST-LPIPS (VGG, real ImageNet weights) to the true face; FD-VGG (Fréchet distance of the
ST-LPIPS VGG16 features of all answers against all true faces: not FID, and over a few hundred faces only its
differences mean something); ``diversity``: mean pairwise ST-LPIPS of 4 samples for each of the first
``--diversity-faces`` faces; ``hair_hit``: how often the ``attr:hair`` classifier (vqstack.evaluation.attributes,
trained on the data's tags) finds the requested colour (for answers without tags: how often the same colours come
out by chance); ``reference_agreement``: how often it finds the reference's hair colour in the answer (for answers
without a reference: against the same reference faces, by chance).

Edit: ``vqstack.TranslatePipeline.edit`` asks each of the first ``--edit-faces`` faces for a hair colour the
classifier does not see in it, at each ``--strengths``; reported: the hit rate, the share of token cells changed,
PSNR / ST-LPIPS of the whole picture to the input, and PSNR of the unchanged cells (exact by construction: they
keep the input's pixels).

    python benchmarks/translation_compare.py --tokenizer runs/small64/tokenizer --translator runs/translate64/prior \
        --pix2pix runs/pix2pix64/pix2pix --data ../shared/data/anime-faces --grid docs/images/translation.png
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import torch
from PIL import ImageFilter

import vqstack
from vqstack.conditions.reference import with_reference
from vqstack.data import ImageDataset, load_image_dataset
from vqstack.evaluation import build_suite
from vqstack.evaluation.attributes import attribute_classifier, column_tags
from vqstack.perceptual.stlpips import STLPIPS
from vqstack.pipelines.images import from_pil, make_grid_image, to_pil

METRICS = "psnr,ssim,stlpips,fd-vgg"
HERE = Path(__file__).resolve().parent


def load_pix2pix_module():
    spec = importlib.util.spec_from_file_location("pix2pix_baseline", HERE / "pix2pix.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pil_edges(face: torch.Tensor, threshold: int = 28) -> torch.Tensor:
    """Line art made another way than the training filter: PIL FIND_EDGES on the smoothed grey face, thresholded
    -> (1, H, W) in [-1, 1], black lines on white."""
    grey = to_pil(face[None])[0].convert("L").filter(ImageFilter.SMOOTH)
    edges = torch.from_numpy(np.asarray(grey.filter(ImageFilter.FIND_EDGES), dtype=np.float32))
    lines = (edges.view(1, *face.shape[-2:]) > threshold).float()
    lines[:, [0, -1], :] = 0  # FIND_EDGES leaves a frame at the border: no line there
    lines[:, :, [0, -1]] = 0
    return 1 - 2 * lines


def eight_bit(images: torch.Tensor) -> torch.Tensor:
    return ((images.clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1


class Judge:
    """The metrics: the true faces' FD-VGG statistics computed once; ST-LPIPS for diversity; the hair classifier."""

    def __init__(self, faces: torch.Tensor, dataset, data: str, batch: int):
        self.faces, self.batch = faces, batch
        self.suite = build_suite(METRICS, sync_on_compute=False)
        for metric in self.suite.sets.values():
            metric.reset_real_features = False
        for real in faces.split(batch):
            self.suite.update_sets(real, real=True)
        self.stlpips = STLPIPS("vgg")
        self.hair, record = attribute_classifier(dataset, column_tags(dataset, "hair"), data, faces.shape[-1])
        self.hair_record = {"held_out_accuracy": record.get("held_out_accuracy"), "path": record.get("path")}
        self.colours = list(self.hair.config["classes"])

    @torch.no_grad()
    def hair_of(self, images: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.hair(chunk).argmax(1) for chunk in images.split(self.batch)])

    @torch.no_grad()
    def score(self, images: torch.Tensor) -> dict:
        self.suite.reset()
        for fake, real in zip(images.split(self.batch), self.faces.split(self.batch)):
            self.suite.update_pairs(fake, real)
            self.suite.update_sets(fake, real=False)
        return {name: round(value, 4 if name in ("ssim", "stlpips") else 2)
                for name, value in self.suite.compute().items()}

    @torch.no_grad()
    def diversity(self, samples: list[torch.Tensor]) -> float:
        """Mean pairwise ST-LPIPS among the samples (each (F, 3, H, W), the same F faces)."""
        pairs = [self.stlpips(samples[a], samples[b]).mean() for a in range(len(samples))
                 for b in range(a + 1, len(samples))]
        return round(float(torch.stack(pairs).mean()), 4)


class Answers:
    """Each method's answers for condition images (F, C, H, W)."""

    def __init__(self, tokenizer, translator, pix2pix, module, cfg_scale: float, batch: int):
        self.tokenizer, self.translator, self.pix2pix, self.module = tokenizer, translator, pix2pix, module
        self.cfg_scale, self.batch = cfg_scale, batch

    @torch.no_grad()
    def translate(self, lines: torch.Tensor, labels=None, references=None, seed: int = 0) -> torch.Tensor:
        out = []
        generator = torch.Generator().manual_seed(seed)
        for start in range(0, len(lines), self.batch):
            chunk = lines[start:start + self.batch]
            image = chunk
            if self.translator.reference:
                image = with_reference(chunk, None if references is None else references[start:start + self.batch])
            batch_labels = None if labels is None else labels[start:start + self.batch]
            tokens = self.translator.generate(len(chunk), labels=batch_labels, cfg_scale=self.cfg_scale, image=image,
                                              generator=generator)
            out.append(self.tokenizer.decode(tokens.view(-1, *self.translator.grid)))
        return eight_bit(torch.cat(out))

    @torch.no_grad()
    def baseline(self, lines: torch.Tensor, seed: int = 0) -> torch.Tensor:
        return eight_bit(self.module.translate(self.pix2pix, lines, dropout=True, seed=seed, batch_size=self.batch))


def compare(judge: Judge, answers: Answers, lines: torch.Tensor, diversity_faces: int) -> tuple[dict, dict]:
    """(report, images) of every method on one kind of line art."""
    faces, colours = judge.faces, judge.colours
    count = len(faces)
    requested = torch.arange(count) % len(colours)
    references = faces.roll(-1, 0)  # the next face
    reference_hair = judge.hair_of(references)
    labels = [f"{colours[c]} hair" for c in requested.tolist()]
    reference_labels = [f"{colours[c]} hair" for c in reference_hair.tolist()]
    methods = {  # name: (tags, references); None: the baseline
        "translator": (None, None),
        "translator+tags": (labels, None),
        "translator+reference": (None, references),
        "translator+tags+reference": (reference_labels, references),
        "pix2pix": None,
    }

    def run(name: str, rows: int, seed: int) -> torch.Tensor:
        """The answers of method ``name`` for the first ``rows`` faces."""
        if methods[name] is None:
            return answers.baseline(lines[:rows], seed=seed)
        tags, refs = methods[name]
        return answers.translate(lines[:rows], None if tags is None else tags[:rows],
                                 None if refs is None else refs[:rows], seed=seed)

    report, images = {}, {}
    for name in methods:
        answer = images[name] = run(name, count, 0)
        hair = judge.hair_of(answer)
        asked = reference_hair if name == "translator+tags+reference" else requested
        report[name] = {**judge.score(answer),
                        "hair_hit": round(float((hair == asked).float().mean()), 3),
                        "reference_agreement": round(float((hair == reference_hair).float().mean()), 3)}
        extra = [run(name, diversity_faces, seed) for seed in (1, 2, 3)]
        report[name]["diversity"] = judge.diversity([answer[:diversity_faces], *extra])
        print(json.dumps({name: report[name]}), flush=True)
    return report, images


def edit_report(pipe, judge: Judge, faces: torch.Tensor, strengths: list[float], seed: int,
                grid: str | None = None, columns: int = 8) -> dict:
    """Hit rate of the requested hair colour per strength, and what the edit kept."""
    faces = eight_bit(faces)  # what the edit is given: the faces as 8-bit pictures
    own = judge.hair_of(faces)
    colours = judge.colours
    asked = [(int(c) + 1 + i % (len(colours) - 1)) % len(colours) for i, c in enumerate(own)]  # never its own
    pictures = to_pil(faces)
    report = {"faces": len(faces), "chance": round(1 / len(colours), 3),
              "asked": [colours[c] for c in asked[:columns]]}
    shown = [faces[:columns]]
    for strength in strengths:
        edited, changed = [], []
        for picture, colour in zip(pictures, asked):
            result = pipe.edit(picture, labels=f"{colours[colour]} hair", strength=strength, seed=seed)
            edited.append(from_pil(result.image, picture.size))
            changed.append(result.changed)
        edited, changed = torch.cat(edited), torch.stack(changed)
        shown.append(edited[:columns])
        hit = judge.hair_of(edited) == torch.tensor(asked)
        f = faces.shape[-1] // changed.shape[-1]
        kept = ~changed.repeat_interleave(f, 1).repeat_interleave(f, 2)[:, None].expand_as(faces)
        squared = (edited - faces).pow(2)
        kept_mse = float(squared[kept].mean()) if kept.any() else float("nan")
        report[f"strength_{strength:g}"] = {
            "hair_hit": round(float(hit.float().mean()), 3),
            "cells_changed": round(float(changed.float().mean()), 3),
            "psnr_whole": round(float(10 * torch.log10(4 / squared.mean((1, 2, 3))).mean()), 2),
            "stlpips_whole": round(float(judge.stlpips(edited, faces).mean()), 4),
            "psnr_unchanged_cells": ("none kept" if math.isnan(kept_mse) else "exact" if kept_mse == 0
                                     else round(10 * math.log10(4 / kept_mse), 2)),
        }
        print(json.dumps({f"edit strength {strength:g}": report[f"strength_{strength:g}"]}), flush=True)
    if grid:  # rows: the input, then each strength
        make_grid_image(to_pil(torch.cat(shown)), columns=columns, zoom=2).save(grid)
    return report


def save_grid(path: str, faces, lines, images: dict, columns: int = 8) -> None:
    rows = [lines[:columns].expand(-1, 3, -1, -1)] + [images[name][:columns] for name in images] + [faces[:columns]]
    rows.insert(3, faces.roll(-1, 0)[:columns])  # the reference faces, before the answers that used them
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    make_grid_image(to_pil(torch.cat(rows)), columns=columns, zoom=2).save(path)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--translator", required=True, help="prior/ folder written by recipes/translate_anime.py")
    p.add_argument("--pix2pix", required=True, help="pix2pix/ folder written by benchmarks/pix2pix.py")
    p.add_argument("--data", default="../shared/data/anime-faces")
    p.add_argument("--faces", type=int, default=256, help="the last N faces of --data (default: %(default)s)")
    p.add_argument("--diversity-faces", type=int, default=64)
    p.add_argument("--edit-faces", type=int, default=64)
    p.add_argument("--strengths", default="0.25,0.5,0.75,1")
    p.add_argument("--cfg-scale", type=float, default=5.0)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0, help="seed of the line-art draws (the recipe's --seed)")
    p.add_argument("--grid", default=None, help="grid of the lineart case: line art, answers, reference, original")
    p.add_argument("--edit-grid", default=None, help="grid of edits: the input, then one row per strength")
    p.add_argument("--sweep-cfg", default=None,
                   help="only score the translator (no tags, no reference, lineart) at these guidance scales, "
                        "e.g. 1,2,3,5: how --cfg-scale was chosen")
    p.add_argument("--json-out", default=None)
    args = p.parse_args(argv)

    torch.manual_seed(0)
    tokenizer = vqstack.Tokenizer.from_pretrained(args.tokenizer).eval()
    translator = vqstack.load_component(args.translator).eval()
    module = load_pix2pix_module()
    pix2pix, pix2pix_config = module.load_pix2pix(args.pix2pix)
    size = translator.condition_size[0]
    dataset = load_image_dataset(args.data)
    images = ImageDataset(dataset, size, random_flip=False)
    rows = range(len(images) - args.faces, len(images))
    faces = torch.stack([images.pixels(row) for row in rows])
    judge = Judge(faces, dataset, args.data, args.batch_size)
    condition = translator.build_image_condition()
    line_art = {"lineart": torch.stack([condition.sample(face, i, 0, args.seed) for i, face in enumerate(faces)]),
                "pil-edges": torch.stack([pil_edges(face) for face in faces])}
    answers = Answers(tokenizer, translator, pix2pix, module, args.cfg_scale, args.batch_size)
    if args.sweep_cfg:
        report = {}
        for scale in [float(s) for s in args.sweep_cfg.split(",")]:
            answers.cfg_scale = scale
            report[f"cfg_{scale:g}"] = judge.score(answers.translate(line_art["lineart"]))
            print(json.dumps({f"cfg_{scale:g}": report[f"cfg_{scale:g}"]}), flush=True)
        return report
    with torch.no_grad():
        ceiling = eight_bit(torch.cat([tokenizer.decode(tokenizer.encode(chunk)) for chunk in faces.split(64)]))
    report = {"faces": len(faces), "image_size": size, "cfg_scale": args.cfg_scale, "colours": judge.colours,
              "hair_classifier": judge.hair_record, "translator": args.translator, "pix2pix": args.pix2pix,
              "pix2pix_trained": pix2pix_config.get("trained"), "pix2pix_steps": pix2pix_config.get("steps"),
              "tokenizer_ceiling": judge.score(ceiling),
              "real_faces": {"hair_hit": round(float((judge.hair_of(faces) == torch.arange(len(faces)) %
                                                      len(judge.colours)).float().mean()), 3)}}
    for name, lines in line_art.items():
        report[name], shown = compare(judge, answers, lines, args.diversity_faces)
        if args.grid and name == "lineart":
            save_grid(args.grid, faces, lines, shown)
    pipe = vqstack.TranslatePipeline(tokenizer, translator)
    report["edit"] = edit_report(pipe, judge, faces[:args.edit_faces], [float(s) for s in args.strengths.split(",")],
                                 args.seed, args.edit_grid)
    print(json.dumps(report, indent=1))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=1) + "\n")
    return report


if __name__ == "__main__":
    main()
