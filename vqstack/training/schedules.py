"""Learning-rate schedules, counted in optimizer steps (not micro-batches, not micro-batches times processes)."""
from __future__ import annotations

import math

import torch


def warmup_cosine(step: int, warmup: int, total: int) -> float:
    """The LR factor at ``step``: linear warm-up over ``warmup`` steps, then a half cosine to 0 at ``total``
    (transformers' ``get_cosine_schedule_with_warmup``, the factor the recipes have always used)."""
    if step < warmup:
        return step / max(1, warmup)
    progress = (step - warmup) / max(1, total - warmup)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


def cosine_schedule(optimizer, total, warmup=0, start=0) -> torch.optim.lr_scheduler.LambdaLR:
    """Warm-up then cosine over the ``total - start`` steps from ``start`` on, and 0 before ``start``.

    ``start`` serves a network that trains only from some step on (the discriminator from ``disc_start``): the
    scheduler is stepped with every optimizer step of the run, so all of a run's schedulers count the same steps,
    and its schedule spans exactly the steps that network trains. ``total``, ``warmup`` and ``start`` are ints, or
    functions of no arguments read at every step: a time-budgeted run learns its length after it has begun."""
    def value(v) -> int:
        return v() if callable(v) else v

    def factor(step: int) -> float:
        first = value(start)
        span = max(1, value(total) - first)
        return 0.0 if step < first else warmup_cosine(step - first, min(value(warmup), span), span)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
