"""A trained translator paints held-out line art and a PIL-drawn sketch in the colours asked for.

Runs where docs/translation.md's run left its models (runs/small64/tokenizer, runs/translate64/prior) and the
shared anime faces are present; skipped elsewhere (a fresh clone has no trained models). The check is the hair
region's colour: "green hair" must come out greener than "red hair", on the same drawing and seeds."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from helpers.recipes import ROOT
from vqstack.cli import main

TOKENIZER, PRIOR = ROOT / "runs/small64/tokenizer", ROOT / "runs/translate64/prior"
FACES = ROOT.parent / "shared" / "data" / "anime-faces"

pytestmark = pytest.mark.skipif(not (TOKENIZER.is_dir() and PRIOR.is_dir() and FACES.is_dir()),
                                reason="needs the trained translator of docs/translation.md and the shared faces")


def sketch() -> Image.Image:
    drawing = Image.new("RGB", (300, 240), "white")
    pen = ImageDraw.Draw(drawing)
    pen.ellipse((85, 40, 215, 210), outline="black", width=4)
    pen.arc((60, 10, 240, 150), start=180, end=360, fill="black", width=4)
    for x in (110, 160):
        pen.ellipse((x, 110, x + 30, 140), outline="black", width=4)
    return drawing


def held_out_line_art() -> Image.Image:
    import vqstack
    from vqstack.data import ImageDataset, load_image_dataset

    images = ImageDataset(load_image_dataset(str(FACES)), 64, random_flip=False)
    lines = vqstack.build("condition", "lineart").sample(images.pixels(len(images) - 1), 0)
    return Image.fromarray(((lines[0].numpy() + 1) * 127.5).astype(np.uint8))


def greenness(path: Path) -> float:
    """Mean (G - R) of the outer ring of each painted picture (hair and background, not the face)."""
    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
    ring = np.ones(pixels.shape[:2], bool)
    h, w = ring.shape
    ring[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = False
    return float((pixels[..., 1] - pixels[..., 0])[ring].mean())


@pytest.mark.parametrize("drawing", [sketch, held_out_line_art], ids=["pil-sketch", "held-out-line-art"])
def test_translate_paints_the_requested_hair_colour(drawing, tmp_path):
    image = drawing()
    image.save(tmp_path / "drawing.png")
    painted = {}
    for colour in ("green", "red"):
        out = tmp_path / f"{colour}.png"
        assert main(["translate", "--tokenizer", str(TOKENIZER), "--prior", str(PRIOR), "--image",
                     str(tmp_path / "drawing.png"), "--labels", f"{colour} hair", "--n", "4", "--seed", "0",
                     "--out", str(out)]) == 0
        painted[colour] = greenness(out)
    assert painted["green"] > painted["red"] + 10
    assert Image.open(tmp_path / "green.png").size[0] > image.size[0]  # a grid of 4 pictures of the drawing's size
