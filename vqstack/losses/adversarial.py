"""Adversarial losses for tokenizer training: GAN losses by name, VQGAN's adaptive weight, and LeCAM.

Every reduction that involves ``torch.distributed`` is an average over processes, so all ranks use the same
adversarial weight and hold the same LeCAM state; call these functions on every rank (they are collectives when
``torch.distributed`` is initialized).
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

# --- GAN losses ---------------------------------------------------------------------------------------------
# Discriminator losses carry taming's factor 0.5 (the mean of the real and the fake term).


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """0.5 * (E[relu(1 - D(x))] + E[relu(1 + D(G(z)))]): no gradient once a logit is beyond the margin."""
    return 0.5 * (F.relu(1.0 - logits_real.float()).mean() + F.relu(1.0 + logits_fake.float()).mean())


def non_saturating_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """0.5 * (E[-log sigmoid(D(x))] + E[-log(1 - sigmoid(D(G(z))))]): the original GAN's cross-entropy."""
    return 0.5 * (F.softplus(-logits_real.float()).mean() + F.softplus(logits_fake.float()).mean())


def hinge_g_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    """-E[D(G(z))] (taming's generator loss with the hinge discriminator loss)."""
    return -logits_fake.float().mean()


def non_saturating_g_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    """E[-log sigmoid(D(G(z)))]: strong gradients while the discriminator still wins (Goodfellow et al. 2014)."""
    return F.softplus(-logits_fake.float()).mean()


DISCRIMINATOR_LOSSES = {"hinge": hinge_d_loss, "non_saturating": non_saturating_d_loss}
GENERATOR_LOSSES = {"hinge": hinge_g_loss, "non_saturating": non_saturating_g_loss}


def _lookup(table: dict, kind: str, what: str):
    try:
        return table[kind.replace("-", "_")]  # "non-saturating" (LlamaGen's spelling) works too
    except KeyError:
        raise ValueError(f"Unknown {what} loss {kind!r}; choose one of {', '.join(table)}.") from None


def discriminator_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor, kind: str = "hinge") -> torch.Tensor:
    """The discriminator's loss ``kind`` ("hinge" or "non_saturating") on real and fake logits of any shape."""
    return _lookup(DISCRIMINATOR_LOSSES, kind, "discriminator")(logits_real, logits_fake)


def generator_loss(logits_fake: torch.Tensor, kind: str = "hinge") -> torch.Tensor:
    """The generator's (tokenizer's) adversarial loss ``kind`` ("hinge" or "non_saturating") on fake logits."""
    return _lookup(GENERATOR_LOSSES, kind, "generator")(logits_fake)


# --- VQGAN's adaptive weight ----------------------------------------------------------------------------------


def _average_across_processes(t: torch.Tensor, group=None) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM, group=group)
        t /= dist.get_world_size(group)
    return t


def adaptive_weight(rec_loss: torch.Tensor, gen_loss: torch.Tensor, last_layer: torch.Tensor,
                    delta: float = 1e-4, max_weight: float = 1e4, group=None) -> torch.Tensor:
    """VQGAN's adaptive adversarial weight  lambda = ||grad_L rec_loss|| / (||grad_L gen_loss|| + delta).

    rec_loss: the reconstruction objective the GAN term is balanced against (pixel + perceptual, taming's nll).
    gen_loss: the generator's adversarial loss.
    last_layer: the decoder's final weight (``decoder.last_layer``); both losses must depend on it.
    delta: keeps the ratio finite when the adversarial gradient vanishes.
    max_weight: upper clamp (taming's 1e4).
    group: the process group to average over (default: all processes).

    Returns a detached scalar; multiply it by your discriminator weight. The graph is retained for the backward
    pass of the total loss. When ``torch.distributed`` is initialized the two gradients are averaged over
    processes (one all_reduce of the last layer's size, twice) before the norms are taken: these are the norms of
    the gradients DDP applies, and every rank uses the same weight. (taming computes it from each rank's own batch,
    so the ranks' weights drift apart; averaging per-rank norms instead overstates both norms whenever the ranks'
    gradients point different ways.)
    """
    try:
        rec_grad, = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)
        gen_grad, = torch.autograd.grad(gen_loss, last_layer, retain_graph=True)
    except RuntimeError as err:
        raise RuntimeError(f"adaptive_weight needs rec_loss and gen_loss to both depend on last_layer (the "
                           f"decoder's final weight, decoder.last_layer) through a live graph: compute them "
                           f"outside torch.no_grad() and before any backward() frees the graph. ({err})") from err
    grads = _average_across_processes(torch.stack([rec_grad.detach().float(), gen_grad.detach().float()]), group)
    norms = grads.flatten(1).norm(dim=1)
    return (norms[0] / (norms[1] + delta)).clamp(0.0, max_weight).detach()


# --- LeCAM regularizer --------------------------------------------------------------------------------------


class LeCAM(nn.Module):
    """LeCAM regularizer (Tseng et al., CVPR 2021) for the discriminator under limited data:

        R = E[relu(D(x) - ema_fake)^2] + E[relu(ema_real - D(G(z)))^2]

    with ``ema_real`` / ``ema_fake`` exponential moving averages of the mean real / fake logits. It keeps the
    discriminator's predictions from drifting apart; add ``weight * lecam(logits_real, logits_fake)`` to the
    discriminator loss (the paper uses 0.3 with BigGAN, MAGVIT 0.001).

    The averages are buffers, so they are saved in the state dict and restored on resume. When torch.distributed
    is initialized the batch means are averaged over processes first, so every rank holds the same state.
    """

    # decay: EMA factor per update, i.e. per discriminator forward in training mode (the paper's 0.99); with
    # gradient accumulation over k micro-batches that is k updates per optimizer step: use decay ** (1 / k)
    def __init__(self, decay: float = 0.99):
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"LeCAM decay must be in [0, 1), got {decay}.")
        self.decay = decay
        self.register_buffer("ema_real", torch.zeros(()))
        self.register_buffer("ema_fake", torch.zeros(()))
        # The first update copies the batch means instead of averaging with an arbitrary start value.
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def update(self, logits_real: torch.Tensor, logits_fake: torch.Tensor, group=None) -> None:
        """Move the averages towards this batch's mean real and fake logits."""
        means = torch.stack([logits_real.detach().float().mean(), logits_fake.detach().float().mean()])
        means = _average_across_processes(means, group).to(self.ema_real.device)
        # torch.where, not `if bool(self.initialized)`: no device->host read in the discriminator step
        for ema, mean in ((self.ema_real, means[0]), (self.ema_fake, means[1])):
            ema.copy_(torch.where(self.initialized, ema.lerp(mean, 1.0 - self.decay), mean))
        self.initialized.fill_(True)

    def forward(self, logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
        """Update the averages (in training mode) and return the regularizer for this batch (a scalar)."""
        if self.training:
            self.update(logits_real, logits_fake)
        ema_real = self.ema_real.to(logits_fake.device)
        ema_fake = self.ema_fake.to(logits_real.device)
        return (F.relu(logits_real.float() - ema_fake).pow(2).mean()
                + F.relu(ema_real - logits_fake.float()).pow(2).mean())

    def extra_repr(self) -> str:
        return f"decay={self.decay}"
