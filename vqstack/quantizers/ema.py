"""EMAVectorQuantizer: codes are running means of their assigned vectors (VQ-VAE-2, Sonnet's VectorQuantizerEMA)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import QuantizerOutput, to_maps, to_vectors
from .codebook import (CodebookQuantizer, check_dim, check_indices, check_unit_interval, code_stats, fp32,
                       nearest_codes)


class EMAVectorQuantizer(CodebookQuantizer):
    """Nearest-code quantizer whose codebook follows exponential moving averages instead of gradients.

    In training mode each forward, with n_k vectors (over all processes) assigned to code k summing to s_k:
    ``cluster_size ← decay·cluster_size + (1−decay)·n``, ``embed_sum ← decay·embed_sum + (1−decay)·s`` and
    ``code_k = embed_sum_k / smoothed cluster_size_k`` (Laplace smoothing with ``eps`` keeps unused codes finite).
    Counts and sums come from ``index_add_`` and are all-reduced, so every process holds the same
    codebook. Nothing updates in eval mode, nor for a batch with a NaN or inf on any process.
    loss = commitment_weight · ‖z − sg(e)‖² (the codebook has no loss).

    Args:
        dim: channels of z (D), also the code dimension; 256 (taming's embed_dim) when built from a bare name.
        codebook_size: number of codes (K).
        decay: EMA decay of cluster sizes and sums, applied once per training forward (micro-batch; 0.99 as in
            VQ-VAE-2, lower adapts faster, noisier); with ``--grad-accum k`` use ``decay ** (1 / k)`` for the same
            memory in optimizer steps.
        eps: Laplace smoothing of cluster sizes.
        commitment_weight: β, the weight of the commitment term ‖z − sg(e)‖².
        kmeans_init: initialise the codebook with k-means on the first finite training batch (all
            processes' data).
        kmeans_iters: Lloyd iterations of that k-means.
        dead_code_threshold: restart codes whose cluster size EMA (vectors per training forward, i.e. per
            micro-batch, over all processes) falls below this with random current-batch vectors; 0 turns restarts
            off. 1-2 suits batches with N >> K vectors. Splitting a batch into k micro-batches divides the counts
            by k: divide the threshold by k too.
    """

    def __init__(self, dim: int = 256, codebook_size: int = 1024, decay: float = 0.99, eps: float = 1e-5,
                 commitment_weight: float = 0.25, kmeans_init: bool = False, kmeans_iters: int = 10,
                 dead_code_threshold: float = 0.0):
        super().__init__()
        check_dim(dim, "dim")
        check_unit_interval(decay, "decay")
        if eps <= 0:
            raise ValueError(f"eps must be > 0, got {eps}.")
        if commitment_weight < 0:
            raise ValueError(f"commitment_weight must be >= 0, got {commitment_weight}.")
        self.dim = dim
        self.decay, self.eps = float(decay), float(eps)
        self.commitment_weight = float(commitment_weight)
        self.init_codebook_state(codebook_size, kmeans_init, kmeans_iters, dead_code_threshold, cosine=False)
        codebook = torch.randn(codebook_size, dim)
        self.register_buffer("codebook", codebook)
        self.register_buffer("embed_sum", codebook.clone())  # cluster_size starts at 1: embed_sum = codebook

    @classmethod
    def example_kwargs(cls) -> dict:
        return {"dim": 8, "codebook_size": 64}

    def codes(self) -> torch.Tensor:
        return self.codebook

    @torch.no_grad()
    def write_codes(self, mask, values, counts) -> None:
        rows = mask[:, None]
        self.codebook.copy_(torch.where(rows, values, self.codebook))
        self.cluster_size.copy_(torch.where(mask, counts, self.cluster_size))
        self.embed_sum.copy_(torch.where(rows, values * counts[:, None], self.embed_sum))

    @torch.no_grad()
    def update_codebook(self, x: torch.Tensor, indices: torch.Tensor) -> None:
        """The EMA step; a batch that is not finite on some process leaves every buffer as it was."""
        counts, sums = code_stats(x, indices, self.codebook_size)
        self.track_usage(counts, self.decay)
        embed_sum = self.embed_sum.mul(self.decay).add_(sums, alpha=1 - self.decay)
        self.embed_sum.copy_(self.keep_if_nonfinite(embed_sum, self.embed_sum))
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (total + self.codebook_size * self.eps) * total
        self.codebook.copy_(self.keep_if_nonfinite(self.embed_sum / smoothed[:, None], self.codebook))

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        self.check_input(z)
        x = to_vectors(z)
        with fp32(z.device):
            xf = x.float()
            restarted = self.prepare_codebook(xf) if self.training else 0
            indices = nearest_codes(xf, self.codebook)
            e = F.embedding(indices, self.codebook)
            loss = self.commitment_weight * F.mse_loss(xf, e)  # the codebook is a buffer: e carries no gradient
            if self.training:
                self.update_codebook(xf, indices)  # after the lookup: this step's output uses the codes it searched
        quantized = to_maps(x + (e.to(x.dtype) - x).detach(), z.shape)
        return self.make_output(quantized, indices, loss, restarted, z)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        check_indices(indices, self.codebook_size, type(self).__name__)
        b, h, w = indices.shape
        return to_maps(F.embedding(indices.reshape(-1), self.codebook), (b, self.dim, h, w))
