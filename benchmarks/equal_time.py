"""Tokenizers at equal wall-clock: each entry trains recipes/vqgan_anime.py under the same ``--time-budget`` on the
same data, then all are measured on the same held-out faces. The anchor, ``taming``, is taming-transformers' own
Encoder/Decoder/VectorQuantizer2 (benchmarks/taming_anchor.py; ``pip install --no-deps taming-transformers-rom1504``)
with L1 + codebook loss, trained by the same loop.

    python benchmarks/equal_time.py --entries small,taming --budget 20m --jobs 2 --json runs/equal-time.json
    python benchmarks/equal_time.py --quick        # seconds, on generated images: does every entry run?
    python benchmarks/equal_time.py --measure runs/small64/tokenizer --holdout 256   # score a trained one alike

``--jobs 2`` trains two entries at once, each with an equal share of the cores (``--threads`` each; default: the
cores divided by the jobs), so both see the same machine for the same minutes. Metrics on the last ``--holdout``
faces (the runs hold them out): PSNR, SSIM, ST-LPIPS, usage, colour-histogram distance; with a tagged folder, the
hair classifier's accuracy on originals and on reconstructions, overall and per colour. ``goals`` compares each
entry with the anchor: PSNR >= anchor + 2.5 dB, ST-LPIPS <= 0.6x the anchor's, usage >= 0.9, hair kept >= 0.9 of
real and no colour below 0.8 of its own.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "recipes"))

from taming_anchor import TAMING_CONFIG, TAMING_LR, register, taming_installed  # noqa: E402

FAST = ["--mixed-precision", "bf16", "--channels-last"]  # docs/training.md "Faster steps"
ENTRIES = {
    # name: (config on top of the small preset, extra recipe options)
    "small": ({}, FAST),
    "small-f4": ({"tokenizer": {"encoder": {"name": "conv", "kwargs": {"ch_mult": [1, 2, 4]}},
                                "decoder": {"name": "conv", "kwargs": {"ch_mult": [1, 2, 4]}}}}, FAST),
    "small-nogan": ({"loss": {"adversarial": 0.0}}, FAST),
    "small-noperceptual": ({"loss": {"perceptual": 0.0}}, FAST),
    "small-ch48": ({"tokenizer": {"encoder": {"name": "conv", "kwargs": {"ch": 48}},
                                  "decoder": {"name": "conv", "kwargs": {"ch": 48}}}}, FAST),
    "taming": (TAMING_CONFIG, ["--mixed-precision", "no"]),
}
METRICS = ["psnr", "ssim", "stlpips", "usage", "colour-hist"]


def recipe_args(name: str, args, workdir: Path) -> list[str]:
    config, extra = ENTRIES[name]
    config_file = workdir / f"{name}.json"
    config_file.write_text(json.dumps({**config, "eval_size": args.holdout}))
    lr = ["--lr", str(TAMING_LR * args.batch_size)] if name == "taming" else []
    return ["--data", args.data, "--preset", "small", "--config", str(config_file), "--time-budget", args.budget,
            "--batch-size", str(args.batch_size), "--seed", str(args.seed), "--eval-every", str(args.eval_every),
            "--sample-every", str(args.eval_every), "--checkpoint-every", "1000000", "--log-every", "10",
            "--num-workers", "1", "--output-dir", str(workdir / name), *lr, *extra]


def train_one(name: str, recipe: list[str]) -> None:
    """Runs in the child process: the anchor's components registered, then the recipe."""
    if name == "taming":
        register()
    from vqgan_anime import main

    main(recipe)


def train_all(names: list[str], args, workdir: Path) -> None:
    """Every entry in its own process, ``--jobs`` at a time, each limited to ``threads`` intra-op threads."""
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    pending, running = list(names), []
    while pending or running:
        while pending and len(running) < args.jobs:
            name = pending.pop(0)
            log = (workdir / f"{name}.log").open("w")
            command = [sys.executable, __file__, "--train-one", name, "--", *recipe_args(name, args, workdir)]
            running.append((name, subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)))
        time.sleep(1)
        for name, process in list(running):
            if process.poll() is not None:
                running.remove((name, process))
                if process.returncode != 0:
                    raise SystemExit(f"{name} failed (exit {process.returncode}); see {workdir / name}.log")


def run_summary(run_dir: Path) -> dict:
    """Steps, images and time per step from the run's metrics.jsonl."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
    train = [r for r in rows if "images_per_sec" in r]
    rates = [r["images_per_sec"] for r in train if r["images_per_sec"]]
    return {"steps": max(r["step"] for r in rows), "images_per_sec": round(sum(rates) / len(rates), 2),
            "last_eval": next((r for r in reversed(rows) if any(k.startswith("eval/") for k in r)), {})}


def measure(tokenizer_dir: Path, images: torch.Tensor, args) -> dict:
    import vqstack
    from vqstack.evaluation import evaluate_tokenizer
    from vqstack.evaluation.attributes import attribute_fidelity

    tokenizer = vqstack.Tokenizer.from_pretrained(tokenizer_dir)
    row = evaluate_tokenizer(tokenizer, images.split(64), METRICS)
    if args.attribute:
        report = attribute_fidelity(tokenizer, args.data, args.attribute, cache_dir=args.cache_dir)
        kept = {name: c["recon"] / c["real"] for name, c in report.per_class.items() if c["real"] > 0}
        row.update(report.values, hair_per_colour={name: f"{c['real']:.2f}->{c['recon']:.2f}"
                                                    for name, c in report.per_class.items()},
                   hair_kept=round(report.values[f"attr:{args.attribute}/recon"]
                                   / report.values[f"attr:{args.attribute}/real"], 3),
                   hair_worst_colour=min(kept, key=kept.get), hair_worst_kept=round(min(kept.values()), 3))
    return row


def goals(row: dict, anchor: dict) -> dict:
    met = {"psnr_gain_db": round(row["psnr"] - anchor["psnr"], 2),
           "stlpips_ratio": round(row["stlpips"] / anchor["stlpips"], 3), "usage": row["usage"]}
    met["met"] = {"psnr": met["psnr_gain_db"] >= 2.5, "stlpips": met["stlpips_ratio"] <= 0.6,
                  "usage": row["usage"] >= 0.9}
    if "hair_kept" in row:
        met["met"].update(hair=row["hair_kept"] >= 0.9, hair_worst_colour=row["hair_worst_kept"] >= 0.8)
    return met


def main(argv=None) -> list[dict]:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--train-one"]:
        return train_one(argv[1], argv[3:])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(ROOT.parent / "shared/data/anime-faces"), help="images, as the recipe takes")
    p.add_argument("--entries", default="small,taming", help=f"comma-separated, of: {', '.join(ENTRIES)}")
    p.add_argument("--budget", default="20m", help="--time-budget of every entry (default: %(default)s)")
    p.add_argument("--jobs", type=int, default=1, help="entries trained at once (default: %(default)s)")
    p.add_argument("--threads", type=int, default=None, help="threads per entry (default: cores / jobs)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--eval-every", type=int, default=200, help="held-out evaluation inside each run")
    p.add_argument("--holdout", type=int, default=512, help="last N images, never trained on, for the metrics")
    p.add_argument("--attribute", default="hair", help="tag column for the classifier ('' = none)")
    p.add_argument("--cache-dir", default=None, help="where the attribute classifier is kept (default: the cache)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default=None, help="keep the runs here (default: a temporary folder)")
    p.add_argument("--json", default=None, help="write the results here too")
    p.add_argument("--quick", action="store_true", help="a few seconds per entry on generated images")
    p.add_argument("--measure", default=None, metavar="TOKENIZER_DIR",
                   help="train nothing: score this tokenizer folder on the last --holdout faces, as the entries")
    args = p.parse_args(argv)
    if args.measure:
        row = {"tokenizer": args.measure, "holdout": args.holdout,
               **measure(Path(args.measure), held_out(args), args)}
        print(json.dumps(row), flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(row, indent=1))
        return [row]
    names = args.entries.split(",")
    unknown = sorted(set(names) - set(ENTRIES))
    if unknown:
        raise SystemExit(f"Unknown entries {unknown}; choose from {', '.join(ENTRIES)}.")
    if "taming" in names:
        if args.quick and not taming_installed():
            print("taming-transformers-rom1504 is not installed: the quick run leaves the anchor out", file=sys.stderr)
            names.remove("taming")
        else:
            register()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.workdir or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        if args.quick:
            sys.path.insert(0, str(ROOT / "tests"))
            from helpers.recipes import write_image_folder

            args.data = str(write_image_folder(workdir / "images", count=48, size=64))
            args.budget, args.batch_size, args.holdout, args.attribute, args.eval_every = "20s", 4, 8, "", 1000
        train_all(names, args, workdir)
        images = held_out(args)
        results = []
        for name in names:
            row = {"entry": name, "change": ENTRIES[name][0] if name != "taming" else "taming-transformers modules",
                   "options": ENTRIES[name][1], **run_summary(workdir / name),
                   **measure(workdir / name / "tokenizer", images, args)}
            results.append(row)
            print(json.dumps(row), flush=True)
    if "taming" in names:
        anchor = next(r for r in results if r["entry"] == "taming")
        for row in results:
            if row is not anchor:
                row["goals"] = goals(row, anchor)
    summary = {"data": args.data, "budget": args.budget, "jobs": args.jobs,
               "threads_per_entry": args.threads or max(1, (os.cpu_count() or 1) // args.jobs),
               "batch_size": args.batch_size, "holdout": args.holdout, "seed": args.seed, "torch": torch.__version__,
               "results": results}
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))
    print(json.dumps({r["entry"]: r.get("goals") for r in results}))
    return results


def held_out(args) -> torch.Tensor:
    """The last --holdout images at 64 px, as the recipe holds them out (center crop, no flip)."""
    from vqstack.data import ImageDataset, load_image_dataset

    images = load_image_dataset(args.data)
    tail = ImageDataset(images.select(range(len(images) - args.holdout, len(images))), 64, random_flip=False)
    return torch.stack([tail[i]["pixel_values"] for i in range(len(tail))])


if __name__ == "__main__":
    main()
