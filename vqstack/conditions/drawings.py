"""A user's drawing -> the line-art condition a prior was trained on: (1, size, size) in [-1, 1], ink -1, paper +1.

Drawings come as any file a person has: RGB or grayscale scans, transparent PNGs from a drawing app, palette GIFs,
white chalk on black, any aspect ratio, any size. :func:`drawing_to_condition` brings each to what ``lineart``
gives in training: luma (BT.601, as PIL's "L"), dark lines on white paper, paper exactly white, the longest side at
the model's size (padded with paper to a square), lines that survive the shrinking; :func:`crop_back` cuts the
generated image back to the drawing's own frame.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

BLANK_STD = 0.01  # brightness std (0..1) below which a drawing holds no lines: JPEG noise on blank paper is ~0.005


def _open(drawing):
    """A PIL image, or the upright image in a file."""
    from PIL import Image, ImageOps

    if isinstance(drawing, Image.Image):
        return drawing
    if isinstance(drawing, (str, Path)):
        with Image.open(drawing) as opened:
            return ImageOps.exif_transpose(opened)  # a phone photo of a sketch carries its rotation in EXIF
    raise TypeError(f"A drawing is a PIL image or an image file path, got {type(drawing).__name__}.")


def _brightness(image) -> torch.Tensor:
    """Any PIL mode -> (H, W) float in [0, 1]: transparency composited over white (a drawing app's empty canvas is
    paper), palette and 16-bit converted, then BT.601 luma."""
    from ..data.images import to_rgb

    return torch.from_numpy(np.asarray(to_rgb(image).convert("L"), dtype=np.float32) / 255)


def _resize(paper: torch.Tensor, size: int) -> torch.Tensor:
    """A square (S, S) drawing -> (size, size). Shrinking averages ink over each pixel's area, where a thin line
    would fade to a faint grey (a 2-pixel stroke at 1024 is an eighth of a pixel at 64); so shrinking by more than
    2 first keeps the darkest pixel of each block that becomes a quarter of an output pixel (max-pooling the ink),
    then averages those quarters: every line keeps a trace."""
    ink = (1 - paper)[None, None]
    side = ink.shape[-1]
    if side > 2 * size:
        ink = F.adaptive_max_pool2d(ink, 2 * size)
    if ink.shape[-1] > size:
        ink = F.interpolate(ink, size=(size, size), mode="area")
    elif ink.shape[-1] < size:  # a small drawing: bicubic up, overshoot clamped
        ink = F.interpolate(ink, size=(size, size), mode="bicubic", align_corners=False)
    return 1 - ink[0, 0].clamp(0, 1)


def drawing_to_condition(drawing, size: int, blank_std: float = BLANK_STD):
    """A user's drawing (PIL image or file) -> ``(condition, box)``.

    ``condition``: float (1, ``size``, ``size``) in [-1, 1], ink -1 and paper +1, as ``lineart`` gives in training.
    ``box``: (left, top, right, bottom) of the drawing inside that square, in its pixels; the rest is padding, so
    ``crop_back(generated, box, drawing.size)`` restores the drawing's frame.

    RGBA is composited over white; white lines on black (detected by a dark median: most of a drawing is paper) are
    inverted; the paper's grey (a scan's 0.9) is lifted to white and the darkest line pulled to black, since the
    lines the prior saw run from paper to full ink. A blank drawing raises ``ValueError``."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive int (the model's image side), got {size!r}.")
    image = _open(drawing)
    v = _brightness(image)
    std = float(v.std()) if v.numel() > 1 else 0.0
    if std < blank_std:
        raise ValueError(f"The drawing is blank (brightness std {std:.4f} < {blank_std}): draw dark lines on light "
                         f"paper, or light lines on a dark one.")
    if float(v.median()) < 0.5:  # white chalk on a blackboard, or an inverted export
        v = 1 - v
    v = (v / v.median()).clamp(max=1)  # paper to exactly white (the median is >= 0.5 here)

    height, width = v.shape
    side = max(height, width)
    top, left = (side - height) // 2, (side - width) // 2
    square = torch.ones(side, side)  # padding is paper, which the prior reads as "no line here"
    square[top:top + height, left:left + width] = v
    v = _resize(square, size)

    darkest = float(v.min())
    if darkest < 0.95:  # the darkest ink to black, unless nothing is darker than that (stretching would draw noise)
        v = ((v - darkest) / (1 - darkest)).clamp(0, 1)
    scale = size / side
    box = (round(left * scale), round(top * scale), round((left + width) * scale), round((top + height) * scale))
    return v[None] * 2 - 1, box


def crop_back(image, box, size=None):
    """The part of a generated square PIL ``image`` inside ``box`` (from :func:`drawing_to_condition`), resized to
    ``size`` (width, height: the drawing's own size) when given."""
    from PIL import Image

    cropped = image.crop(tuple(box))
    return cropped if size is None else cropped.resize(tuple(size), Image.Resampling.LANCZOS)
