"""FSQ: Finite Scalar Quantization (Mentzer et al. 2023, "Finite Scalar Quantization: VQ-VAE Made Simple")."""
from __future__ import annotations

import math

import torch
from torch import nn

from .base import Quantizer, QuantizerOutput, to_maps, to_vectors, usage_metrics
from .codebook import check_dim, check_indices, fp32

# The paper's recommendation for ~2^14 codes (its Table: 2^14 -> [8, 8, 8, 6, 5]); 15,360 codes, near LlamaGen's
# 16,384, so an AR prior's vocabulary stays moderate. Use [8, 8, 8, 5, 5, 5] for ~2^16, [8, 5, 5, 5] for ~2^10.
DEFAULT_LEVELS = (8, 8, 8, 6, 5)


class FSQ(Quantizer):
    """Each channel is bounded by a tanh to ``levels[i]`` values and rounded (straight-through); the code is the
    grid point, the index its mixed-radix number (channel 0 least significant). No codebook, no codebook loss:
    ``loss`` is a zero tensor; ``codebook_size = prod(levels)``, derived, so FSQ takes no ``codebook_size``.

    Args:
        dim: channels of z (D); defaults to ``len(levels)``. If different, linear (1x1) projections map z to
            ``len(levels)`` channels and the codes back (as vector-quantize-pytorch does).
        levels: number of values per quantized channel, each >= 2. Codes lie in [-1, 1].
    """

    def __init__(self, dim: int | None = None, levels: list[int] | tuple[int, ...] = DEFAULT_LEVELS):
        super().__init__()
        levels = list(levels)
        if not levels or any(not isinstance(n, int) or isinstance(n, bool) or n < 2 for n in levels):
            raise ValueError(f"levels must be a non-empty list of ints >= 2, e.g. [8, 5, 5, 5]; got {levels!r}.")
        dim = len(levels) if dim is None else dim
        check_dim(dim, "dim")
        self.dim, self.levels = dim, levels
        self.codebook_size = math.prod(levels)
        projects = dim != len(levels)
        self.project_in = nn.Linear(dim, len(levels)) if projects else nn.Identity()
        self.project_out = nn.Linear(len(levels), dim) if projects else nn.Identity()
        lv = torch.tensor(levels, dtype=torch.float32)
        basis = torch.cumprod(torch.tensor([1] + levels[:-1], dtype=torch.long), 0)
        # constants, rebuilt from ``levels``: not part of the state dict
        self.register_buffer("_levels", lv, persistent=False)
        self.register_buffer("_basis", basis, persistent=False)

    @classmethod
    def example_kwargs(cls) -> dict:
        return {"dim": 4, "levels": [8, 5, 5, 3]}

    def bound(self, x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
        """tanh-bound channel i to (−(L_i−1)/2, (L_i−1)/2), shifted for even L_i so rounding gives L_i values."""
        half_l = (self._levels - 1) * (1 + eps) / 2
        offset = torch.where(self._levels % 2 == 0, 0.5, 0.0)
        shift = torch.atanh(offset / half_l)
        return torch.tanh(x + shift) * half_l - offset

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        self.check_input(z)
        x = self.project_in(to_vectors(z))
        half_width = (self._levels // 2)
        with fp32(z.device):
            bounded = self.bound(x.float())
            grid = bounded.detach().round()
            codes = (bounded + (grid - bounded).detach()) / half_width  # straight-through rounding; in [-1, 1]
            # a NaN input would cast to an out-of-range index (and crash the usage count): give it the centre
            # code's index; its code stays NaN, so the output still shows it
            indices = ((grid.nan_to_num(0.0) + half_width).long() * self._basis).sum(-1)
        quantized = to_maps(self.project_out(codes.to(x.dtype)), z.shape)
        loss = z.new_zeros((), dtype=torch.float32)
        return QuantizerOutput(quantized, indices.view(z.shape[0], *z.shape[2:]), loss,
                               usage_metrics(indices, self.codebook_size))

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        check_indices(indices, self.codebook_size, type(self).__name__)
        b, h, w = indices.shape
        half_width = self._levels // 2
        digits = (indices.reshape(-1, 1) // self._basis) % self._levels.long()
        codes = (digits.float() - half_width) / half_width
        return to_maps(self.project_out(codes), (b, self.dim, h, w))
