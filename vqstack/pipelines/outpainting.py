"""Growing an image beyond its border (outpainting) with a prior of a fixed token grid.

The prior models one (h, w) grid, so a larger canvas is filled window by window: each window of the prior's size
holds the tokens known so far (the image's own, then what earlier windows drew) and the prior fills the rest of it.
Windows are visited from the image outward, half a window apart, so every new token is drawn next to known ones.
A bidirectional prior (maskgit) sees the known tokens on every side of a window; an autoregressive one (ar) only
those before each token in raster order, which is why extending to the left or upward suits it poorly.
"""
from __future__ import annotations

import itertools

import torch

SIDES = ("top", "bottom", "left", "right")


def parse_extend(text: str) -> dict[str, int]:
    """``"left=8,right=8"`` -> ``{"top": 0, "bottom": 0, "left": 8, "right": 8}`` (tokens per side)."""
    sides = dict.fromkeys(SIDES, 0)
    for part in filter(None, (p.strip() for p in text.split(","))):
        side, _, value = part.partition("=")
        if side not in sides:
            raise ValueError(f"--extend: unknown side {side!r} in {text!r}; use {', '.join(SIDES)}, e.g. left=8,right=8.")
        if not value.strip().isdigit():
            raise ValueError(f"--extend: {side}={value!r} is not a whole number of tokens.")
        sides[side] = int(value)
    if not any(sides.values()):
        raise ValueError(f"--extend {text!r} grows no side; give tokens per side, e.g. left=8,right=8.")
    return sides


def border_pixels(extend: dict[str, int], size: tuple[int, int], grid: tuple[int, int]) -> dict[str, int]:
    """Pixels each side of an image of ``size`` (height, width) grows by for ``extend`` tokens: a token is one cell
    at the image's scale on its axis (height / grid rows, width / grid columns), and each side's total is rounded
    to the nearest pixel, halves up (integer arithmetic, so no float rounding surprises)."""
    def pixels(tokens: int, side: int, cells: int) -> int:
        return (2 * tokens * side + cells) // (2 * cells)

    (height, width), (rows, columns) = size, grid
    return {"top": pixels(extend["top"], height, rows), "bottom": pixels(extend["bottom"], height, rows),
            "left": pixels(extend["left"], width, columns), "right": pixels(extend["right"], width, columns)}


def window_starts(before: int, size: int, total: int) -> list[int]:
    """Start offsets of windows of ``size`` along an axis of ``total`` tokens whose original part begins at
    ``before``: the original's own window first, then half a window further out on each side until the ends."""
    stride = max(1, size // 2)
    starts = [before]
    while starts[-1] > 0:
        starts.append(max(starts[-1] - stride, 0))
    right = before
    while right + size < total:
        right = min(right + stride, total - size)
        starts.append(right)
    return sorted(set(starts), key=lambda s: abs(s - before))


def windows(grid: tuple[int, int], extend: dict[str, int]) -> list[tuple[int, int]]:
    """Top-left corners (y, x) of the prior-sized windows covering the grown canvas, nearest the image first."""
    h, w = grid
    ys = window_starts(extend["top"], h, h + extend["top"] + extend["bottom"])
    xs = window_starts(extend["left"], w, w + extend["left"] + extend["right"])
    corners = itertools.product(ys, xs)
    return sorted(corners, key=lambda c: (abs(c[0] - extend["top"]) + abs(c[1] - extend["left"]), c))


def fill_canvas(canvas: torch.Tensor, grid: tuple[int, int], extend: dict[str, int], draw) -> torch.Tensor:
    """Fill the -1 tokens of ``canvas`` (H, W) window by window; ``draw(known)`` takes a (1, h*w) window with -1
    where to sample and returns the (1, h*w) filled window."""
    h, w = grid
    for y, x in windows(grid, extend):
        window = canvas[y:y + h, x:x + w]
        if (window < 0).any():
            canvas[y:y + h, x:x + w] = draw(window.reshape(1, -1)).view(h, w)
    return canvas
