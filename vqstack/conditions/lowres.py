"""Low resolution: an image shrunk by a factor and brought back to its size, for super-resolution as translation."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data.degradations import DOWN_FACTORS
from .base import Condition


class LowRes(Condition):
    """images (B, 3, H, W) -> the same images at 1/``factor`` resolution, resized back to (B, 3, H, W).

    Args:
        factor: the downsampling factor, 2, 4 or 8 (the ``down:F`` degradation's choices).
    """

    name = "lowres"
    channels = 3

    def __init__(self, factor: int = 4):
        super().__init__()
        if isinstance(factor, bool) or factor not in DOWN_FACTORS:
            raise ValueError(f"lowres factor must be one of {', '.join(map(str, DOWN_FACTORS))}, got {factor!r}.")
        self.factor = int(factor)

    def convert(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        height, width = images.shape[-2:]
        small = (max(1, round(height / self.factor)), max(1, round(width / self.factor)))
        # bicubic with antialiasing on the way down (a fine pattern would otherwise alias into a coarse one), as the
        # down:F degradation does, so a restorer's and a translator's low-resolution inputs look alike
        images = F.interpolate(images, size=small, mode="bicubic", antialias=True, align_corners=False)
        return F.interpolate(images, size=(height, width), mode="bicubic", antialias=True, align_corners=False)
