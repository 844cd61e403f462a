"""Pixel reconstruction losses, selectable by name from a config."""
from __future__ import annotations

import torch
import torch.nn.functional as F

# name -> elementwise loss; "l1" is taming's choice for VQGAN, "l2" LlamaGen's and the VQ-VAE paper's.
RECONSTRUCTION_LOSSES = {
    "l1": F.l1_loss,
    "l2": F.mse_loss,
}


def reconstruction_loss(recon: torch.Tensor, target: torch.Tensor, kind: str = "l1",
                        reduction: str = "mean") -> torch.Tensor:
    """Distance between ``recon`` and ``target`` (same shape); ``kind`` is "l1" or "l2" (mean squared error).

    ``reduction`` is torch's: "mean" (a scalar, the default), "sum" or "none" (elementwise)."""
    try:
        loss_fn = RECONSTRUCTION_LOSSES[kind]
    except KeyError:
        raise ValueError(f"Unknown reconstruction loss {kind!r}; choose one of "
                         f"{', '.join(RECONSTRUCTION_LOSSES)}.") from None
    if recon.shape != target.shape:
        raise ValueError(f"recon {tuple(recon.shape)} and target {tuple(target.shape)} must have the same shape.")
    return loss_fn(recon, target, reduction=reduction)
