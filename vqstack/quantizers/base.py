"""What every quantizer returns and exposes."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class QuantizerOutput:
    """The one output type of every quantizer."""

    quantized: torch.Tensor  # (B, D, H, W), straight-through gradient to the input
    indices: torch.Tensor  # long (B, H, W); multi-codebook quantizers add a last axis (B, H, W, Q)
    loss: torch.Tensor  # scalar: the quantizer's own training loss
    metrics: dict[str, float] = field(default_factory=dict)  # at least "perplexity" and "usage"


class Quantizer(nn.Module):
    """Base class: subclasses set ``dim`` and ``codebook_size`` and implement ``forward`` and
    ``indices_to_codes``. Inputs are channel-first maps (B, D, H, W)."""

    dim: int
    codebook_size: int

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        raise NotImplementedError

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """Long indices as returned in ``QuantizerOutput.indices`` -> codes (B, D, H, W)."""
        raise NotImplementedError

    def check_input(self, z: torch.Tensor) -> None:
        if z.dim() != 4 or z.shape[1] != self.dim:
            raise ValueError(
                f"{type(self).__name__} expects z of shape (B, {self.dim}, H, W), got {tuple(z.shape)}."
            )


def to_vectors(z: torch.Tensor) -> torch.Tensor:
    """(B, D, H, W) -> (B*H*W, D) rows, one per position."""
    return z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])


def to_maps(vectors: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """(B*H*W, D) rows -> (B, D, H, W), the inverse of :func:`to_vectors` for ``shape`` = z.shape."""
    b, d, h, w = shape
    return vectors.reshape(b, h, w, d).permute(0, 3, 1, 2)


@torch.no_grad()
def usage_metrics(indices: torch.Tensor, codebook_size: int) -> dict[str, float]:
    """Perplexity of the code histogram and the fraction of codes hit, from flat indices."""
    counts = torch.bincount(indices.reshape(-1), minlength=codebook_size).float()
    probs = counts / counts.sum().clamp_min(1)
    entropy = -(probs * torch.log(probs.clamp_min(1e-12))).sum()
    return {"perplexity": float(entropy.exp()), "usage": float((counts > 0).float().mean())}
