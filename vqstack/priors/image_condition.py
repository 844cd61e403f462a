"""How a prior reads an image condition (line art, grayscale, a low-resolution copy: vqstack/conditions/): a learned
patch embedding onto the token grid, and the null condition that classifier-free guidance pushes away from.

A condition image (B, C, h*f, w*f), f the tokenizer's downsampling (``patch_size``), becomes (B, h*w, dim)
embeddings in raster order, one per token cell, so condition cell j and image token j describe the same patch:

    patchify   Conv2d(C, dim, kernel f, stride f)      every pixel of a cell, linearly (ViT's patch embedding)
    mix        x + Conv2d(dim, dim, 3)(GELU(x))        a line crossing a cell border shows in both cells
    norm       LayerNorm(dim), gain init_std           starts at the scale of the token embeddings (std init_std)

``null`` is one learned vector, the same at every cell: the embedding of "no condition image" (an image dropped in
training, the unconditional half of guidance, ``image=None``). The backbone's own positions (``ar``'s RoPE,
``maskgit``'s position embeddings) tell the cells apart, so a vector per cell would add nothing but parameters.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CFG_TARGETS = ("both", "image", "labels")  # which condition the unconditional half of guidance drops


def check_grid(grid, seq_len: int) -> tuple[int, int]:
    """The (h, w) token grid of ``seq_len`` tokens: ``grid`` as given, or the square one when None."""
    if grid is None:
        side = int(round(seq_len ** 0.5))
        if side * side != seq_len:
            raise ValueError(f"seq_len={seq_len} is not a square grid: give grid=[h, w] with h * w = {seq_len}.")
        return side, side
    if (not isinstance(grid, (list, tuple)) or len(grid) != 2
            or any(isinstance(g, bool) or not isinstance(g, int) or g < 1 for g in grid)):
        raise ValueError(f"grid must be [h, w], two positive ints, got {grid!r}.")
    if grid[0] * grid[1] != seq_len:
        raise ValueError(f"grid {list(grid)} holds {grid[0] * grid[1]} tokens, but seq_len={seq_len}.")
    return int(grid[0]), int(grid[1])


class ImageConditionEmbedding(nn.Module):
    """Condition images (B, ``channels``, h * ``patch_size``, w * ``patch_size``) -> (B, h*w, ``dim``) embeddings
    on the token grid, raster order; ``null`` (dim,) is the learned embedding of the null condition (see the module
    docstring for the layers and why)."""

    def __init__(self, channels: int, dim: int, patch_size: int, grid: tuple[int, int], init_std: float = 0.02):
        super().__init__()
        self.channels, self.dim, self.patch_size, self.grid = channels, dim, patch_size, tuple(grid)
        self.patchify = nn.Conv2d(channels, dim, kernel_size=patch_size, stride=patch_size)
        self.mix = nn.Conv2d(dim, dim, kernel_size=3, padding=1)
        self.norm = nn.LayerNorm(dim)
        nn.init.constant_(self.norm.weight, init_std)  # the scale of the token embeddings (std init_std)
        self.null = nn.Parameter(torch.randn(dim) * init_std)

    @property
    def image_size(self) -> tuple[int, int]:
        return self.grid[0] * self.patch_size, self.grid[1] * self.patch_size

    @property
    def num_positions(self) -> int:
        return self.grid[0] * self.grid[1]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.patchify(image)
        x = x + self.mix(F.gelu(x))
        return self.norm(x.flatten(2).transpose(1, 2))  # (B, h*w, dim), raster order as the image tokens

    def null_embeddings(self, n: int) -> torch.Tensor:
        """(n, h*w, dim): the null condition at every cell (a view; ``torch.cat`` or ``torch.where`` copies it)."""
        return self.null.expand(n, self.num_positions, -1)

    def extra_repr(self) -> str:
        return f"grid={self.grid}, patch_size={self.patch_size}"
