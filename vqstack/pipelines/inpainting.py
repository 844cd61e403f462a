"""Inpainting's parts: the mask's region and token cells, the feather that blends a fill into the kept picture,
and the likelihood that ranks candidate fills."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from PIL import Image

from ..core.modes import evaluating


WHITE = 128  # mask pixels at least this bright (8-bit grey) mark the region to repair


MAX_FEATHER = 8  # input pixels: the farthest a repair blends into the kept picture


def check_inpaint_inputs(image: Image.Image, mask: Image.Image, candidates: int) -> None:
    """Clear errors for the mistakes inpainting cannot guess around."""
    if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 1:
        raise ValueError(f"candidates must be an int >= 1, got {candidates!r}.")
    if mask.size != image.size:
        raise ValueError(f"The mask is {mask.size[0]}x{mask.size[1]} pixels but the image is "
                         f"{image.size[0]}x{image.size[1]}: give a mask of the image's size.")


def mask_region(mask: Image.Image) -> torch.Tensor:
    """(1, 1, H, W) bool: the white pixels of ``mask``, the region to repair."""
    from torchvision.transforms.functional import pil_to_tensor

    white = pil_to_tensor(mask.convert("L"))[None] >= WHITE
    if not white.any():
        raise ValueError("The mask has no white pixel: white marks the region to repair, black the part to keep.")
    return white


def region_cells(region: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(1, 1, h, w) bool token cells holding any pixel of ``region``, found at the region's own resolution so a
    thin stroke is not lost to resizing (cells of a size that does not divide overlap by a pixel)."""
    return F.adaptive_max_pool2d(region.float(), grid) > 0


def feather_reach(size: tuple[int, int], grid: tuple[int, int]) -> int:
    """Feather width in input pixels: one token cell at the input's scale (the larger axis, rounded up), at least
    1 and at most MAX_FEATHER, so pixels farther than that from the repaired region are the input's own."""
    cell = max(size[0] / grid[0], size[1] / grid[1])
    return max(1, min(MAX_FEATHER, math.ceil(cell)))


def feather(region: torch.Tensor, reach: int) -> torch.Tensor:
    """(1, 1, H, W) weight of the generated image: 1 on ``region`` (bool pixels), falling linearly to 0 at ``reach``
    + 1 pixels (Chebyshev distance) outside it; 0 further away, where the original is kept exactly."""
    grown = region.float()
    alpha = grown.clone()
    for _ in range(reach):  # each 3x3 dilation grows the region by one pixel; the sum counts how near a pixel is
        grown = F.max_pool2d(grown, 3, stride=1, padding=1)
        alpha += grown
    return alpha / (reach + 1)


@torch.inference_mode()
def known_token_loglik(prior, tokens: torch.Tensor, known: torch.Tensor, labels=None) -> torch.Tensor:
    """(N,) log-likelihood under ``prior`` of the known tokens after the first unknown one in each of ``tokens``
    (N, seq_len): how well each fill agrees with the kept image that follows it in raster order."""

    unknown = known[0] < 0
    scored = ~unknown & (torch.arange(len(unknown), device=unknown.device) > unknown.float().argmax())
    with evaluating(prior):
        logits = prior(tokens, labels=labels).logits.float()
    loglik = logits.log_softmax(-1).gather(-1, tokens[..., None])[..., 0]
    return loglik[:, scored].sum(1)
