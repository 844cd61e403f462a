"""Module modes: evaluate a model (no dropout, no statistics updates) and give it back as it was."""
from __future__ import annotations

import contextlib

from torch import nn


@contextlib.contextmanager
def evaluating(module: nn.Module):
    """Eval mode for the duration, then each submodule's own mode back (a frozen part stays in eval mode)."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, training in modes:
            m.training = training
