"""Grayscale: the luma of an image, one channel, for colorizing black-and-white photos and screentone manga."""
from __future__ import annotations

import torch

from .base import Condition

# ITU-R BT.601 luma weights, the ones PIL's convert("L") uses, so a user's grayscale file matches what training
# saw. They sum to 1, so the luma of an image in [-1, 1] is the same weighted sum (no rescaling needed).
BT601 = (0.299, 0.587, 0.114)


class Grayscale(Condition):
    """images (B, 3, H, W) -> luma (B, 1, H, W) in [-1, 1] (ITU-R BT.601). It takes no arguments."""

    name = "grayscale"
    channels = 1

    def convert(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        weights = torch.tensor(BT601, dtype=images.dtype, device=images.device)
        return torch.einsum("bchw,c->bhw", images, weights)[:, None]
