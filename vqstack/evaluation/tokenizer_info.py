"""What evaluation reads off a tokenizer: the image side it was built for and its codebook layout.

Both the reconstruction loop and attribute fidelity need these, and ``reconstruction`` builds on ``attributes``, so
they live below both."""
from __future__ import annotations

import torch


def tokenizer_resolution(tokenizer, resolution: int | None = None) -> int:
    """``resolution`` when given, else the one the tokenizer's encoder was built for."""
    resolution = resolution or tokenizer.config["encoder"]["kwargs"].get("resolution")
    if resolution is None:
        raise ValueError("The tokenizer's config names no encoder resolution: pass --resolution (resolution=).")
    return int(resolution)


def codebook_layout(tokenizer) -> tuple[int, int]:
    """(codebook_size, codebooks per position) of ``tokenizer``: a probe tells a (B, h, w) grid from (B, h, w, Q)."""
    side = 2 * tokenizer.downsample
    probe = torch.zeros(1, 3, side, side, device=next(tokenizer.parameters()).device)
    tokens = tokenizer.encode(probe)
    return int(tokenizer.quantizer.codebook_size), tokens.shape[-1] if tokens.dim() == 4 else 1
