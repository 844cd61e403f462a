"""VectorQuantizer: a codebook learned by gradient descent (VQ-VAE, taming's VQGAN, LlamaGen)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import QuantizerOutput, to_maps, to_vectors
from .codebook import (CodebookQuantizer, check_dim, check_indices, check_unit_interval, code_stats, fp32,
                       nearest_codes)


class VectorQuantizer(CodebookQuantizer):
    """Nearest-code quantizer with a learnable codebook and a straight-through gradient.

    loss = ‖sg(z) − e‖² + commitment_weight · ‖z − sg(e)‖² (means over elements): the codebook term moves codes
    toward the encoder outputs, the commitment term (weighted by β) keeps the encoder close to its codes, as in
    van den Oord et al. 2017. taming-transformers and diffusers put β on the codebook term instead; here β is on
    the commitment term.

    Args:
        dim: channels of z (D); 256 (taming's embed_dim) when built from a bare name.
        codebook_size: number of codes (K).
        codebook_dim: code dimension; if set and != dim, linear projections map z down to it and codes back up
            (factorised codes of ViT-VQGAN / LlamaGen, e.g. 8 or 32 with ``l2_normalize=True``).
        commitment_weight: β, the weight of the commitment term ‖z − sg(e)‖².
        l2_normalize: l2-normalise inputs and codes and pick codes by cosine similarity (ViT-VQGAN, LlamaGen);
            the output is then the unit-norm code.
        kmeans_init: initialise the codebook with k-means on the first finite training batch (all
            processes' data).
        kmeans_iters: Lloyd iterations of that k-means.
        dead_code_threshold: restart codes whose usage EMA (vectors per training forward, i.e. per micro-batch,
            over all processes) falls below this with random current-batch vectors; 0 turns restarts off. 1-2
            suits batches with N >> K vectors. Splitting a batch into k micro-batches divides the counts by k:
            divide the threshold by k too.
        usage_decay: decay of that per-code usage EMA, applied once per training forward (micro-batch); with
            ``--grad-accum k`` use ``usage_decay ** (1 / k)`` for the same memory in optimizer steps.
    """

    def __init__(self, dim: int = 256, codebook_size: int = 1024, codebook_dim: int | None = None,
                 commitment_weight: float = 0.25, l2_normalize: bool = False, kmeans_init: bool = False,
                 kmeans_iters: int = 10, dead_code_threshold: float = 0.0, usage_decay: float = 0.99):
        super().__init__()
        check_dim(dim, "dim")
        codebook_dim = dim if codebook_dim is None else codebook_dim
        check_dim(codebook_dim, "codebook_dim")
        check_unit_interval(usage_decay, "usage_decay")
        if commitment_weight < 0:
            raise ValueError(f"commitment_weight must be >= 0, got {commitment_weight}.")
        self.dim, self.codebook_dim = dim, codebook_dim
        self.commitment_weight = float(commitment_weight)
        self.l2_normalize = l2_normalize
        self.usage_decay = float(usage_decay)
        self.init_codebook_state(codebook_size, kmeans_init, kmeans_iters, dead_code_threshold, l2_normalize)
        projects = codebook_dim != dim
        self.project_in = nn.Linear(dim, codebook_dim) if projects else nn.Identity()
        self.project_out = nn.Linear(codebook_dim, dim) if projects else nn.Identity()
        # N(0, 1) codes match unit-scale encoder features; taming's U(±1/K) starts them ~K times too small
        self.codebook = nn.Parameter(torch.randn(codebook_size, codebook_dim))

    @classmethod
    def example_kwargs(cls) -> dict:
        return {"dim": 8, "codebook_size": 64}

    def codes(self) -> torch.Tensor:
        """The (K, codebook_dim) codes as looked up (unit-norm with ``l2_normalize``)."""
        codebook = self.codebook.float()
        return F.normalize(codebook, dim=-1) if self.l2_normalize else codebook

    @torch.no_grad()
    def write_codes(self, mask, values, counts) -> None:
        self.codebook.data.copy_(torch.where(mask[:, None], values.to(self.codebook.dtype), self.codebook.data))
        self.cluster_size.copy_(torch.where(mask, counts, self.cluster_size))

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        self.check_input(z)
        x = self.project_in(to_vectors(z))
        with fp32(z.device):
            x = x.float()
            if self.l2_normalize:
                x = F.normalize(x, dim=-1)
            restarted = self.prepare_codebook(x) if self.training else 0
            codes = self.codes()
            indices = nearest_codes(x, codes, cosine=self.l2_normalize)
            e = F.embedding(indices, codes)
            loss = F.mse_loss(e, x.detach()) + self.commitment_weight * F.mse_loss(x, e.detach())
            quantized = x + (e - x).detach()  # straight-through: the gradient of quantized passes to x unchanged
            if self.training:
                counts, _ = code_stats(x, indices, self.codebook_size, sums=False)
                self.track_usage(counts, self.usage_decay)
        quantized = to_maps(self.project_out(quantized.to(z.dtype)), z.shape)
        return self.make_output(quantized, indices, loss, restarted, z)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        check_indices(indices, self.codebook_size, type(self).__name__)
        e = F.embedding(indices.reshape(-1), self.codes())
        b, h, w = indices.shape
        return to_maps(self.project_out(e), (b, self.dim, h, w))

