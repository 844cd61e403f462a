"""An exponential moving average of a model's weights for export (``--ema-decay``).

torch's ``AveragedModel`` does the bookkeeping and checkpoints with accelerate; only the update rule is ours.
Buffers must follow the model, since an EMA codebook (the ``ema`` quantizer) is itself a buffer. But torch's EMA
rule also blends integer and bool buffers (``p * decay + q * (1 - decay)``, truncated): LFQ's bit shifts, code
counters and "initialised" flags come out wrong. Floating-point tensors are averaged here, the rest copied.
"""
from __future__ import annotations

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def ema_update_fn(decay: float):
    """A ``multi_avg_fn`` for AveragedModel: EMA of floating-point tensors, a copy of every other tensor.
    AveragedModel calls it once per group of tensors sharing a device and dtype."""
    average = get_ema_multi_avg_fn(decay)

    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged) -> None:
        if averaged and (averaged[0].is_floating_point() or averaged[0].is_complex()):
            average(averaged, current, num_averaged)
        else:
            for kept, now in zip(averaged, current):
                kept.copy_(now)

    return update


def weight_ema(model: torch.nn.Module, decay: float) -> AveragedModel:
    """The EMA of ``model``'s parameters and floating-point buffers (others copied); call
    ``.update_parameters(model)`` after each optimizer step and use ``.module`` for eval and export."""
    if not 0.0 < decay < 1.0:
        raise ValueError(f"EMA decay must be in (0, 1), got {decay!r}.")
    return AveragedModel(model, multi_avg_fn=ema_update_fn(decay), use_buffers=True)
