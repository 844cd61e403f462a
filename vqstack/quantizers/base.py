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
    # at least "perplexity" and "usage"; each value a real number that float(v) reads: a detached 0-dim tensor
    # (the built-ins: no device->host sync in the forward) or a Python float. Convert at log time, e.g. with
    # vqstack.training.reporting.to_float_dict.
    metrics: dict[str, torch.Tensor | float] = field(default_factory=dict)


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


def is_metric_value(value) -> bool:
    """Whether ``value`` meets the metrics contract: a real number ``float(value)`` reads without a graph, i.e. a
    Python int or float, or a 0-dim real tensor that needs no gradient (on any device)."""
    if isinstance(value, torch.Tensor):
        return value.dim() == 0 and not value.is_complex() and value.dtype != torch.bool and not value.requires_grad
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@torch.no_grad()
def code_counts(indices: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """How often each code occurs in ``indices`` (any shape), as fp32 (codebook_size,).

    ``index_add_`` rather than ``bincount``: CUDA's bincount reads the indices' min and max back to the host
    (two syncs per call) to size its output; counts of ones are exact either way (up to 2^24 per code)."""
    flat = indices.reshape(-1)
    ones = torch.ones(flat.shape[0], dtype=torch.float32, device=flat.device)
    return torch.zeros(codebook_size, dtype=torch.float32, device=flat.device).index_add_(0, flat, ones)


@torch.no_grad()
def usage_metrics(indices: torch.Tensor, codebook_size: int) -> dict[str, torch.Tensor]:
    """Perplexity of the code histogram and the fraction of codes hit, from indices, as detached 0-dim tensors
    on the indices' device (reading them is the caller's choice: a host sync, best done at log time)."""
    counts = code_counts(indices, codebook_size)
    probs = counts / counts.sum().clamp_min(1)
    entropy = -(probs * torch.log(probs.clamp_min(1e-12))).sum()
    return {"perplexity": entropy.exp(), "usage": (counts > 0).float().mean()}
