"""The VQGAN objectives: what the tokenizer (generator) and the discriminator each minimise.

Data flows one way: images -> tokenizer -> ``TokenizerOutput`` -> :meth:`VQGANObjective.generator_loss`, then
:meth:`VQGANObjective.discriminator_loss` on the detached reconstruction. The perceptual network only appears in
the generator loss, and the discriminator's weights never receive gradients from the generator loss.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from ..losses import LeCAM, adaptive_weight, discriminator_loss, generator_loss, reconstruction_loss


@dataclass
class LossWeights:
    reconstruction: str = "l1"  # pixel loss: "l1" or "l2"
    perceptual: float = 1.0  # weight of the perceptual distance (0 disables it and never runs the network)
    quantizer: float = 1.0  # weight of the quantizer's own loss (commitment / codebook / entropy)
    adversarial: float = 0.1  # weight of the generator's adversarial loss (0 disables the GAN)
    adaptive: bool = True  # scale the adversarial loss by VQGAN's gradient-norm ratio
    gan_loss: str = "hinge"  # "hinge" or "non_saturating"
    disc_start: int = 0  # optimizer step from which the discriminator trains and the GAN term counts
    lecam: float = 0.0  # weight of the LeCAM regulariser on the discriminator (0 disables it)


@contextlib.contextmanager
def frozen(module: nn.Module):
    """``module``'s parameters need no gradient for the duration (then restored): its forward still passes
    gradients to its input, but autograd computes none for its weights."""
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield module
    finally:
        for p, flag in zip(module.parameters(), flags):
            p.requires_grad_(flag)


class VQGANObjective(nn.Module):
    """Reconstruction + perceptual + quantizer + adaptive-weighted adversarial losses.

    ``discriminator`` is the module the discriminator optimiser trains (possibly wrapped by accelerate for DDP);
    ``raw_discriminator`` is the same network unwrapped, which the generator loss calls with frozen weights so DDP
    sees exactly one forward and one backward of the discriminator per step.
    """

    def __init__(self, weights: LossWeights, perceptual: nn.Module | None = None,
                 discriminator: nn.Module | None = None, raw_discriminator: nn.Module | None = None,
                 colour: nn.Module | None = None):
        super().__init__()
        self.weights = weights
        # the tokenizer's colour whitening: the pixel loss weighs every colour axis alike (autoencoders/colour.py)
        self.colour = colour
        self.perceptual = perceptual if weights.perceptual > 0 else None
        self.discriminator = discriminator
        self.raw_discriminator = raw_discriminator if raw_discriminator is not None else discriminator
        self.lecam = LeCAM() if weights.lecam > 0 else None
        if weights.adversarial > 0 and discriminator is None:
            raise ValueError("An adversarial weight > 0 needs a discriminator; set it to 0 for a plain VQ-VAE.")

    def gan_active(self, step: int) -> bool:
        """Whether the GAN terms are on at optimizer step ``step`` (before it they cost nothing)."""
        return self.discriminator is not None and self.weights.adversarial > 0 and step >= self.weights.disc_start

    def generator_loss(self, images: torch.Tensor, out, step: int, last_layer: torch.Tensor | None = None):
        """The tokenizer's total loss for one batch and a dict of its parts, detached 0-dim tensors: nothing is
        read back to the host here; convert at log time (``reporting.to_float_dict``)."""
        w = self.weights
        if self.colour is not None:
            rec = reconstruction_loss(self.colour(out.recon), self.colour(images), w.reconstruction)
        else:
            rec = reconstruction_loss(out.recon, images, w.reconstruction)
        logs = {"rec_loss": rec.detach()}
        nll = rec
        if self.perceptual is not None:
            perceptual = self.perceptual(out.recon, images).mean()
            nll = nll + w.perceptual * perceptual
            logs["perceptual_loss"] = perceptual.detach()
        total = nll + w.quantizer * out.loss
        logs["quantizer_loss"] = out.loss.detach()
        if self.gan_active(step):
            with frozen(self.raw_discriminator):
                g_adv = generator_loss(self.raw_discriminator(out.recon), w.gan_loss)
            scale = adaptive_weight(nll, g_adv, last_layer) if w.adaptive else torch.ones((), device=rec.device)
            total = total + w.adversarial * scale * g_adv
            logs.update(g_adv_loss=g_adv.detach(), adaptive_weight=scale)
        logs["loss"] = total.detach()
        return total, logs

    def discriminator_loss(self, images: torch.Tensor, recon: torch.Tensor, step: int):
        """The discriminator's loss on real images and detached reconstructions, with its logs (detached 0-dim
        tensors, as :meth:`generator_loss`'s)."""
        logits_real = self.discriminator(images.detach())
        logits_fake = self.discriminator(recon.detach())
        loss = discriminator_loss(logits_real, logits_fake, self.weights.gan_loss)
        logs = {"d_loss": loss.detach(), "logits_real": logits_real.detach().float().mean(),
                "logits_fake": logits_fake.detach().float().mean()}
        if self.lecam is not None:
            loss = loss + self.weights.lecam * self.lecam(logits_real, logits_fake)
        return loss, logs
