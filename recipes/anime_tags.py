"""Correct the hair and eye tags of the shared anime-faces folder, writing a new metadata file beside your runs.

The folder's ``metadata.jsonl`` has its two tag columns decoded wrongly: the ``eyes`` column holds the *hair* colour
and the ``hair`` column the *eye* colour, each named from the other list with a shifted index. With the colour
lists in the order of the original data set (``HAIR`` and ``EYES`` below):

    true hair = HAIR[EYES.index(eyes) + 1]        true eyes = EYES[HAIR.index(hair)]

The ``eyes`` value "blue" is HAIR[11] (blonde) or, through a wrapped index -1, HAIR[0] (orange); both are written
as "blonde". Evidence: the colour of the top of the image (mostly hair) is explained far better by the corrected
hair tag than by the original one; this script prints both figures.

    python recipes/anime_tags.py --data ../shared/data/anime-faces --out runs/anime-tags.jsonl
    accelerate launch recipes/prior_anime.py --metadata runs/anime-tags.jsonl ...

The image folder itself is never modified.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

HAIR = "orange white aqua gray green red purple pink blue black brown blonde".split()
EYES = "gray black orange pink yellow aqua purple green brown red blue".split()


def corrected(row: dict) -> dict:
    """One metadata row with the hair and eye tags put right (untagged rows stay untagged)."""
    hair, eyes = row.get("hair"), row.get("eyes")
    if hair is None or eyes is None:
        return {"file_name": row["file_name"], "hair": None, "eyes": None}
    if hair not in HAIR[:len(EYES)] or eyes not in EYES:  # the original never says "blonde"
        raise ValueError(f"{row['file_name']}: tags {hair!r}/{eyes!r} are not from this data set's lists; is this "
                         f"already a corrected file?")
    # "blue" is EYES[10] -> HAIR[11] (blonde); orange hair (HAIR[0], read as EYES[-1]) also ends up there
    return {"file_name": row["file_name"], "hair": HAIR[EYES.index(eyes) + 1],
            "eyes": EYES[HAIR.index(hair)]}


def top_colour(image: Image.Image) -> np.ndarray:
    """A face's hair colour, roughly: chromaticity and brightness of the mean colour of its top third."""
    top = np.asarray(image.convert("RGB").resize((24, 24), Image.BILINEAR), dtype=np.float32)[:8]
    colour = top.reshape(-1, 3).mean(0)
    return np.concatenate([colour / colour.sum(), colour / 255])


def hair_colour_explained(folder: Path, rows: list[dict]) -> float:
    """Fraction of the variance of each tagged face's top-of-image colour explained by its hair tag (0..1)."""
    tagged = [row for row in rows if row.get("hair")]
    features = np.stack([top_colour(Image.open(folder / row["file_name"])) for row in tagged])
    labels = np.array([row["hair"] for row in tagged])
    centre = features.mean(0)
    between = sum((labels == value).sum() * np.sum((features[labels == value].mean(0) - centre) ** 2)
                  for value in np.unique(labels))
    return float(between / np.sum((features - centre) ** 2))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/anime-faces", help="the anime-faces image folder")
    parser.add_argument("--out", default="runs/anime-tags.jsonl", help="the corrected metadata file to write")
    parser.add_argument("--no-check", action="store_true", help="skip the colour check (reads every tagged image)")
    args = parser.parse_args(argv)
    folder = Path(args.data)
    source = folder / "metadata.jsonl"
    if not source.is_file():
        raise SystemExit(f"{source} not found: --data must be the anime-faces folder with its metadata.jsonl.")
    rows = [json.loads(line) for line in source.read_text().splitlines() if line.strip()]
    fixed = [corrected(row) for row in rows]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(row) + "\n" for row in fixed))
    report = {"rows": len(fixed), "tagged": sum(row["hair"] is not None for row in fixed), "out": str(out)}
    if not args.no_check:
        report["hair_colour_explained_original"] = round(hair_colour_explained(folder, rows), 4)
        report["hair_colour_explained_corrected"] = round(hair_colour_explained(folder, fixed), 4)
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
