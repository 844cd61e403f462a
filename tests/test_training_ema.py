"""--ema-decay's weight average: floating-point tensors averaged, integer and bool buffers copied."""
import torch

import vqstack
from vqstack.training.ema import weight_ema


def test_integer_buffers_are_copied_not_averaged():
    # torch's own EMA rule blends LFQ's bit shifts into [13, 12, 10, 10, ...] after 50 updates at this decay
    lfq = vqstack.build("quantizer", "lfq", bits=14)
    ema = weight_ema(lfq, decay=0.9999)
    for _ in range(50):
        ema.update_parameters(lfq)
    assert torch.equal(ema.module._shifts, lfq._shifts)
    assert ema.module._shifts.tolist() == list(range(13, -1, -1))


def test_floating_buffers_follow_the_model():
    # the ema quantizer's codebook is a buffer: the average must move with it, at the EMA rate
    quantizer = vqstack.build("quantizer", "ema", dim=4, codebook_size=8)
    ema = weight_ema(quantizer, decay=0.5)
    ema.update_parameters(quantizer)  # the first update copies
    start = quantizer.codebook.clone()
    quantizer.codebook.add_(1.0)
    ema.update_parameters(quantizer)
    torch.testing.assert_close(ema.module.codebook, start + 0.5)


def test_decay_outside_the_unit_interval_is_refused():
    import pytest

    with pytest.raises(ValueError, match=r"EMA decay must be in \(0, 1\)"):
        weight_ema(torch.nn.Linear(2, 2), decay=1.0)
