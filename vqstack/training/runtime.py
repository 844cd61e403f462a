"""How a recipe's processes find their device."""
from __future__ import annotations

import os

import torch


def has_accelerator() -> bool:
    accelerator = getattr(torch, "accelerator", None)  # torch >= 2.6 knows every accelerator kind
    return accelerator.is_available() if accelerator is not None else torch.cuda.is_available()


def cpu_processes() -> bool:
    """True for a multi-process launch on a machine without an accelerator.

    ``accelerate launch --multi_gpu --num_processes N`` then starts N processes that accelerate would run as N
    unrelated single-process jobs; ``Accelerator(cpu=True)`` makes them one gloo process group instead."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not has_accelerator()
