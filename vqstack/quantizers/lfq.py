"""LFQ: lookup-free quantization (Yu et al. 2023, MAGVIT-2, "Language Model Beats Diffusion")."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import Quantizer, QuantizerOutput, to_maps, to_vectors, usage_metrics
from .codebook import check_dim, check_indices, differentiable_all_reduce_sum, fp32

# Without ``bits`` and with dim > this, LFQ projects to 14 bits: 16,384 codes (LlamaGen's best size at 256px).
# 2^18 (MAGVIT-2) needs a factorised prior head; a plain AR prior's softmax over 262k tokens is slow and sparse.
DEFAULT_MAX_BITS = 14
MAX_BITS = 24  # usage metrics count every code: 2^24 counters is the most we allow


class LFQ(Quantizer):
    """Each of ``bits`` channels is quantized to ±codebook_scale by its sign; the index is the bits read as a
    binary number (channel 0 most significant, 1 = positive). ``codebook_size = 2**bits``, derived.

    loss = commitment_weight·‖z − sg(q)‖² + entropy_weight·(H_sample − diversity_weight·H_codebook), the entropy
    terms in training mode only. With code probabilities p(c|z) = softmax_c(2·z·c/τ) over the 2^bits codes c:

    * H_sample, the mean per-token entropy, is exact and cheap: p(c|z) factorises over bits, with
      p(bit_i = +1) = sigmoid(4·codebook_scale·z_i/τ), so H(p(·|z)) = Σ_i H(bit_i).
    * H_codebook, the entropy of the batch-mean distribution (the whole batch, over every process, through a
      differentiable all-reduce), does not factorise. Bits are split into groups of
      at most ``entropy_group_bits`` (balanced sizes) and the group marginals' entropies summed, each from a
      tokens × 2^group_bits table (Open-MAGVIT2's factorised sub-codebooks). This is exact when one group holds
      all bits (bits <= entropy_group_bits) and otherwise an upper bound that ignores dependence between
      groups. No tokens × 2^bits table is ever built.

    Args:
        dim: channels of z (D); defaults to ``bits``. If different, linear (1x1) projections map z to ``bits``
            channels and the codes back.
        bits: code bits; default ``dim`` if dim <= 14, else 14 (16,384 codes), or 14 when dim is not given.
        codebook_scale: magnitude of the quantized values (±codebook_scale).
        commitment_weight: β, the weight of ‖z − sg(q)‖².
        entropy_weight: weight of the entropy penalty (0.1 in MAGVIT-2).
        diversity_weight: γ, weight of the codebook entropy inside the penalty (1.0 in MAGVIT-2).
        temperature: τ of the code distribution (0.01, i.e. vector-quantize-pytorch's inv_temperature=100).
        entropy_group_bits: most bits per group of the codebook-entropy estimate (tables of 2^this per token).
    """

    def __init__(self, dim: int | None = None, bits: int | None = None, codebook_scale: float = 1.0,
                 commitment_weight: float = 0.25, entropy_weight: float = 0.1, diversity_weight: float = 1.0,
                 temperature: float = 0.01, entropy_group_bits: int = 8):
        super().__init__()
        if dim is not None:
            check_dim(dim, "dim")
        if bits is None:
            bits = dim if dim is not None and dim <= DEFAULT_MAX_BITS else DEFAULT_MAX_BITS
        if not isinstance(bits, int) or isinstance(bits, bool) or not 1 <= bits <= MAX_BITS:
            raise ValueError(f"bits must be an int in [1, {MAX_BITS}] (codebook_size = 2**bits), got {bits!r}.")
        dim = bits if dim is None else dim
        check_dim(entropy_group_bits, "entropy_group_bits")
        for name, value in (("codebook_scale", codebook_scale), ("temperature", temperature)):
            if value <= 0:
                raise ValueError(f"{name} must be > 0, got {value}.")
        for name, value in (("commitment_weight", commitment_weight), ("entropy_weight", entropy_weight),
                            ("diversity_weight", diversity_weight)):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}.")
        self.dim, self.bits, self.codebook_size = dim, bits, 2 ** bits
        self.codebook_scale, self.temperature = float(codebook_scale), float(temperature)
        self.commitment_weight, self.entropy_weight = float(commitment_weight), float(entropy_weight)
        self.diversity_weight = float(diversity_weight)
        groups = math.ceil(bits / entropy_group_bits)
        self.entropy_groups = [bits // groups + (i < bits % groups) for i in range(groups)]  # balanced sizes
        projects = dim != bits
        self.project_in = nn.Linear(dim, bits) if projects else nn.Identity()
        self.project_out = nn.Linear(bits, dim) if projects else nn.Identity()
        self.register_buffer("_shifts", torch.arange(bits - 1, -1, -1), persistent=False)

    @classmethod
    def example_kwargs(cls) -> dict:
        return {"dim": 8, "bits": 8}

    def entropy_terms(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean per-token entropy, codebook entropy) of the code distribution of rows ``x`` (N, bits), in nats."""
        logits = 4 * self.codebook_scale * x.float() / self.temperature  # logit of p(bit_i = +1 | x)
        p = torch.sigmoid(logits)
        per_sample = (p * F.softplus(-logits) + (1 - p) * F.softplus(logits)).sum(-1).mean()
        log_pos, log_neg = F.logsigmoid(logits), F.logsigmoid(-logits)
        codebook, start = x.new_zeros((), dtype=torch.float32), 0
        for size in self.entropy_groups:
            g = slice(start, start + size)
            start += size
            # bit table (size, 2^size): entry [i, c] is bit i (most significant first) of group code c
            shifts = torch.arange(size - 1, -1, -1, device=x.device)[:, None]
            table = (torch.arange(2**size, device=x.device) >> shifts) & 1
            log_probs = log_neg[:, g].sum(-1, keepdim=True) + (log_pos[:, g] - log_neg[:, g]) @ table.float()
            mean = self.code_marginal(log_probs.exp())
            codebook = codebook - (mean * mean.clamp_min(1e-12).log()).sum()
        return per_sample, codebook

    @staticmethod
    def code_marginal(probs: torch.Tensor) -> torch.Tensor:
        """The mean code distribution over every process's rows (N, codes) -> (codes,): the codebook entropy is
        that of the whole distributed batch, as in one process; each rank's own batch would be a noisier
        estimate that rewards a different spread of codes on every rank."""
        # torch.full, not new_tensor: a tensor built from host data is a blocking host->device copy on a GPU
        totals = torch.cat([probs.sum(0), torch.full((1,), probs.shape[0], dtype=probs.dtype, device=probs.device)])
        totals = differentiable_all_reduce_sum(totals)
        return totals[:-1] / totals[-1]

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        self.check_input(z)
        x = self.project_in(to_vectors(z))
        metrics = {}
        with fp32(z.device):
            xf = x.float()
            positive = xf > 0
            q = torch.where(positive, self.codebook_scale, -self.codebook_scale)
            indices = (positive.long() << self._shifts).sum(-1)
            loss = self.commitment_weight * F.mse_loss(xf, q)
            if self.training and self.entropy_weight > 0:
                per_sample, codebook = self.entropy_terms(xf)
                loss = loss + self.entropy_weight * (per_sample - self.diversity_weight * codebook)
                metrics = {"per_sample_entropy": per_sample.detach(), "codebook_entropy": codebook.detach()}
            quantized = xf + (q - xf).detach()  # straight-through sign
        quantized = to_maps(self.project_out(quantized.to(x.dtype)), z.shape)
        metrics = {**usage_metrics(indices, self.codebook_size), **metrics}
        return QuantizerOutput(quantized, indices.view(z.shape[0], *z.shape[2:]), loss, metrics)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        check_indices(indices, self.codebook_size, type(self).__name__)
        b, h, w = indices.shape
        bits = (indices.reshape(-1, 1) >> self._shifts) & 1
        codes = (bits.float() * 2 - 1) * self.codebook_scale
        return to_maps(self.project_out(codes), (b, self.dim, h, w))
