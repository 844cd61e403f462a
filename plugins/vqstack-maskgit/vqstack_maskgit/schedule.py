"""Mask schedules and the pieces of one MaskGIT decoding pass.

A schedule gamma maps progress r in [0, 1] to the fraction of tokens still masked: gamma(0) = 1 (all masked),
gamma(1) = 0 (none). The same gamma serves training (draw r ~ U(0, 1), mask ceil(gamma(r) * L) tokens) and decoding
(after pass t of T, floor(gamma((t + 1) / T) * unknown) tokens stay masked), as in MaskGIT, whose ablation found the
concave "cosine" best.
"""
from __future__ import annotations

import math

import torch

SCHEDULES = {
    "cosine": lambda r: torch.cos(r * (math.pi / 2)),
    "linear": lambda r: 1 - r,
    "square": lambda r: 1 - r ** 2,
    "sqrt": lambda r: 1 - r.sqrt(),
}


def check_schedule(name: str) -> None:
    if name not in SCHEDULES:
        raise ValueError(f"Unknown mask_schedule {name!r}; choose from {sorted(SCHEDULES)}.")


def mask_ratio(r: torch.Tensor, schedule: str = "cosine") -> torch.Tensor:
    """gamma(r): the fraction of tokens masked at progress ``r`` in [0, 1], clamped to [0, 1] against rounding."""
    return SCHEDULES[schedule](r.double()).clamp(0, 1)


def training_mask_counts(r: torch.Tensor, seq_len: int, schedule: str = "cosine") -> torch.Tensor:
    """ceil(gamma(r) * seq_len), at least 1 (a sample with nothing masked would teach nothing): long, r's shape."""
    return (mask_ratio(r, schedule) * seq_len).ceil().long().clamp(1, seq_len)


def lowest(scores: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Bool (B, L): True at the ``counts[b]`` lowest scores of each row (exact counts, ties broken by position)."""
    order = scores.argsort(dim=1, stable=True)
    chosen = torch.arange(scores.shape[1], device=scores.device) < counts[:, None].to(scores.device)
    return torch.zeros_like(chosen).scatter(1, order, chosen)


def training_mask(batch: int, seq_len: int, schedule: str = "cosine", device=None,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Bool (batch, seq_len), True = masked: per sample r ~ U(0, 1) and ceil(gamma(r) * seq_len) positions chosen
    uniformly. Without ``generator`` it draws from the global torch RNG, so a seeded (and resumed) training run
    masks the same tokens; a generator draws on its own device and the mask moves to ``device``."""
    source = generator.device if generator is not None else device
    r = torch.rand(batch, device=source, generator=generator)
    counts = training_mask_counts(r, seq_len, schedule)
    return lowest(torch.rand(batch, seq_len, device=source, generator=generator), counts).to(device)


def masked_after_pass(t: int, steps: int, unknown: torch.Tensor, remaining: torch.Tensor,
                      schedule: str = "cosine") -> torch.Tensor:
    """How many positions per sample stay masked after pass ``t`` (0-based) of ``steps``: long (n,).

    floor(gamma((t + 1) / steps) * unknown), where ``unknown`` counts the positions to sample at the start and
    ``remaining`` those still masked before this pass. As MaskGIT: every pass but the last fills at least one token
    and keeps at least one masked (so each of the ``steps`` passes has something to predict); the last fills all."""
    if t == steps - 1:
        return torch.zeros_like(remaining)
    planned = (mask_ratio(torch.tensor((t + 1) / steps), schedule) * unknown.double()).floor().long()
    return torch.minimum(planned, remaining - 1).clamp(min=1).minimum(remaining)


def gumbel_noise(shape, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """Standard Gumbel noise -log(-log U), drawn on the generator's device (one CPU generator gives the same choice
    whatever device the model is on), then moved to ``device``."""
    source = generator.device if generator is not None else device
    u = torch.rand(shape, device=source, generator=generator).clamp_(min=torch.finfo(torch.float32).tiny)
    return u.log_().neg_().log_().neg_().to(device)
