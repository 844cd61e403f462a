"""SimVQ (Zhu et al. 2024, "Addressing Representation Collapse in Vector Quantized Models with One Linear Layer").

A plain VQ codebook collapses: the codebook loss moves only the codes that were picked, so codes that lose early
are never picked again. SimVQ freezes a random codebook C (K, d) and learns one linear map W (d, d) instead; the
codes are the rows of C W. Every update of W moves the whole codebook at once, so no code is left behind.
"""
import torch
import torch.nn.functional as F
from torch import nn

from vqstack.api import Quantizer, QuantizerOutput, fp32, nearest_codes, to_maps, to_vectors, usage_metrics


class SimVQ(Quantizer):
    """Nearest-code quantizer over the codebook C W: C frozen and random, W learned; straight-through gradient.

    loss = ‖sg(z) − q‖² + commitment_weight · ‖z − sg(q)‖²: the first term trains W (C is a buffer), the second,
    weighted by β, keeps the encoder close to its codes.

    Args:
        dim: channels of z (D), also the code dimension.
        codebook_size: number of codes (K).
        commitment_weight: β, the weight of the commitment term ‖z − sg(q)‖².
        seed: seed of the frozen codebook, so every process draws the same C (it is also saved with the weights).
    """

    def __init__(self, dim: int = 256, codebook_size: int = 1024, commitment_weight: float = 0.25, seed: int = 0):
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive int, got {dim!r}.")
        if not isinstance(codebook_size, int) or codebook_size < 2:
            raise ValueError(f"codebook_size must be an int >= 2, got {codebook_size!r}.")
        if commitment_weight < 0:
            raise ValueError(f"commitment_weight must be >= 0, got {commitment_weight}.")
        self.dim, self.codebook_size, self.commitment_weight = dim, codebook_size, float(commitment_weight)
        # N(0, 1) codes, the scale of unit-variance encoder features (as vqstack's vq starts); a buffer, so no
        # optimizer ever touches it, and persistent, so a checkpoint carries it.
        codebook = torch.randn(codebook_size, dim, generator=torch.Generator().manual_seed(seed))
        self.register_buffer("codebook", codebook)
        self.project = nn.Linear(dim, dim, bias=False)  # W: the one learned layer
        # W starts as the identity, so the codes start as vq's would; the paper keeps nn.Linear's random init
        # and draws C at scale d^-1/2 instead (same idea, different starting scale).
        nn.init.eye_(self.project.weight)

    @classmethod
    def example_kwargs(cls) -> dict:  # small sizes for the conformance checks
        return {"dim": 8, "codebook_size": 64}

    def codes(self) -> torch.Tensor:
        """The effective codebook C W (K, D), fp32, with a gradient to W."""
        return self.project(self.codebook.float())

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        self.check_input(z)
        with fp32(z.device):  # distances and the loss in fp32, also under bf16 autocast
            x = to_vectors(z).float()
            codes = self.codes()
            indices = nearest_codes(x, codes)  # chunked, no (N, K) distance table
            q = F.embedding(indices, codes)  # differentiable in W
            loss = F.mse_loss(q, x.detach()) + self.commitment_weight * F.mse_loss(x, q.detach())
            quantized = x + (q - x).detach()  # straight-through: the gradient of quantized goes to z unchanged
        b, _, h, w = z.shape
        return QuantizerOutput(quantized=to_maps(quantized.to(z.dtype), z.shape), indices=indices.view(b, h, w),
                               loss=loss, metrics=usage_metrics(indices, self.codebook_size))

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """Long indices (B, H, W) -> codes (B, D, H, W), the same values the forward returns in eval mode."""
        b, h, w = indices.shape
        return to_maps(F.embedding(indices.reshape(-1), self.codes()), (b, self.dim, h, w))
