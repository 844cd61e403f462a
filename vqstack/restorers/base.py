"""What every restorer shares: its output type, the tokenizer it serves, and the fidelity blend.

A restorer maps a degraded image to the codes the tokenizer would give the clean image; the tokenizer's frozen
codebook and decoder then draw the clean image. A restorer subclasses :class:`Restorer`, calls
:meth:`Restorer.init_tokenizer` with the tokenizer's config in its constructor, and implements
``forward(images) -> RestorerOutput``; ``init_from_tokenizer(tokenizer)`` copies any weights it shares with the
tokenizer before training.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class RestorerOutput:
    logits: torch.Tensor    # (B, codebook_size, h, w) float: scores of the clean image's code at each position
    features: torch.Tensor  # (B, dim, h, w) float: features in the tokenizer's quantizer input space (what
                            # Tokenizer.features gives the clean image), the fidelity = 1 end of the blend


def tokenizer_part(config: dict, part: str) -> dict:
    """``{"name", "kwargs"}`` of one part ("encoder", "quantizer", "decoder") of a tokenizer config."""
    entry = config.get(part) if isinstance(config, dict) else None
    if entry is None:
        raise ValueError(f"A restorer needs the tokenizer's config (a dict with 'encoder', 'quantizer', 'decoder', "
                         f"as Tokenizer.config gives it); got no {part!r} in {str(config)[:80]}.")
    return {"name": entry, "kwargs": {}} if isinstance(entry, str) else entry


def tokenizer_sizes(config: dict) -> dict:
    """``{"dim", "codebook_size"}`` of a tokenizer config's quantizer, built to read them (it is small)."""
    from ..core.plugins import registry

    entry = tokenizer_part(config, "quantizer")
    quantizer = registry("quantizer").build(entry["name"], **entry.get("kwargs", {}))
    levels = getattr(quantizer, "num_quantizers", None)
    if levels is not None:
        raise ValueError(f"A restorer predicts one code per position, but the tokenizer's quantizer "
                         f"{entry['name']!r} has num_quantizers={levels} codebooks; use a single-codebook "
                         f"tokenizer (vq, ema, fsq, lfq).")
    return {"dim": int(quantizer.dim), "codebook_size": int(quantizer.codebook_size)}


class Restorer(nn.Module):
    """Base of the restorers: the tokenizer's sizes and the blend of predicted and own codes.

    ``image_size``: the square image side it restores (the tokenizer's training resolution); ``downsample``: the
    tokenizer's factor f, so the code grid is image_size / f on a side."""

    codebook_size: int
    dim: int
    image_size: int
    downsample: int

    def init_tokenizer(self, tokenizer: dict, image_size: int, downsample: int) -> None:
        """Check and store what the restorer needs of the tokenizer described by the config ``tokenizer``."""
        sizes = tokenizer_sizes(tokenizer)
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
            raise ValueError(f"image_size must be a positive int, got {image_size!r}.")
        if image_size % downsample:
            raise ValueError(f"image_size {image_size} is not divisible by the tokenizer's downsampling factor "
                             f"{downsample}; use the tokenizer's training resolution.")
        self.tokenizer_config = tokenizer
        self.codebook_size, self.dim = sizes["codebook_size"], sizes["dim"]
        self.image_size, self.downsample = image_size, downsample

    @property
    def grid(self) -> tuple[int, int]:
        side = self.image_size // self.downsample
        return side, side

    def init_from_tokenizer(self, tokenizer) -> None:
        """Copy the weights this restorer shares with ``tokenizer`` (a :class:`vqstack.Tokenizer`) before training;
        the base shares none."""

    def check_images(self, images: torch.Tensor) -> None:
        expected = (3, self.image_size, self.image_size)
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or tuple(images.shape[1:]) != expected:
            got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"This restorer takes images (B, {', '.join(map(str, expected))}) in [-1, 1], got "
                             f"{got}; resize to {self.image_size}x{self.image_size} (RestorePipeline does).")


def blend_codes(tokenizer, output: RestorerOutput, fidelity: float) -> torch.Tensor:
    """The latents (B, dim, h, w) to decode: ``(1 - fidelity)`` times the codebook vectors of the predicted codes
    plus ``fidelity`` times the quantizer's own codes for the restorer's features (CodeFormer's ``w``).

    0 trusts the learned prior of clean images, 1 stays closest to the degraded input."""
    if not 0.0 <= float(fidelity) <= 1.0:
        raise ValueError(f"fidelity must be in [0, 1] (0: the predicted codes, 1: the input's own codes), "
                         f"got {fidelity}.")
    predicted = tokenizer.quantizer.indices_to_codes(output.logits.argmax(1))
    if fidelity == 0:
        return predicted
    features = output.features.to(predicted.dtype)  # bf16 under autocast; the codebook is fp32
    was_training = tokenizer.quantizer.training
    tokenizer.quantizer.eval()  # a lookup, never a codebook update
    try:
        own = tokenizer.quantizer(features).quantized.to(predicted.dtype)
    finally:
        tokenizer.quantizer.train(was_training)
    return own if fidelity == 1 else torch.lerp(predicted, own, float(fidelity))
