"""Training losses for tokenizers: pixel reconstruction, GAN losses, VQGAN's adaptive weight and LeCAM.

Perceptual losses are components (``vqstack.build("perceptual", "lpips")``), in :mod:`vqstack.perceptual`.
"""
from .adversarial import (DISCRIMINATOR_LOSSES, GENERATOR_LOSSES, LeCAM, adaptive_weight, discriminator_loss,
                          generator_loss, hinge_d_loss, hinge_g_loss, non_saturating_d_loss, non_saturating_g_loss)
from .reconstruction import RECONSTRUCTION_LOSSES, reconstruction_loss

__all__ = [
    "reconstruction_loss", "RECONSTRUCTION_LOSSES", "discriminator_loss", "generator_loss", "DISCRIMINATOR_LOSSES",
    "GENERATOR_LOSSES", "hinge_d_loss", "hinge_g_loss", "non_saturating_d_loss", "non_saturating_g_loss",
    "adaptive_weight", "LeCAM",
]
