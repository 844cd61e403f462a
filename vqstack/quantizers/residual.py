"""ResidualVQ: quantize, subtract, quantize the remainder again (SoundStream, EnCodec, RQ-VAE)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import Quantizer, QuantizerOutput
from .codebook import check_dim


class ResidualVQ(Quantizer):
    """``num_quantizers`` levels of any registered single-codebook quantizer; level l quantizes what levels
    0..l−1 left over. quantized = Σ level codes, indices (B, H, W, Q), loss = Σ level losses, codebook_size =
    the levels' (each level has its own codebook of that size).

    Gradients: level l sees the residual r_l = r_{l−1} − q_{l−1} without a detach (as in EnCodec), so the
    straight-through estimator applies once: ∂(Σ q_l)/∂z is the identity for VQ levels. (Detaching the residual,
    as vector-quantize-pytorch does, multiplies the gradient reaching z by the number of levels.)

    Commitment: through the straight-through codes a level's residual carries no gradient back to z, so a level's
    own commitment term reaches z only at level 0. As in RQ-VAE, the encoder commits to every partial sum instead:
    loss = Σ level losses + Σ_{d≥1} β_d ‖z − sg(Σ_{i≤d} e_i)‖², β_d the level's ``commitment_weight`` (0 for
    levels without one, such as FSQ).

    Args:
        dim: channels of z (D), passed to every level; 256 (taming's embed_dim) when built from a bare name.
        num_quantizers: number of levels (Q).
        quantizer: registry name of the level quantizer: "vq", "ema", "fsq", "lfq" or any plugin's
            single-codebook quantizer.
        quantizer_kwargs: extra arguments for every level (e.g. {"kmeans_init": True} or {"levels": [8, 5, 5]}).
        codebook_size: codes per level, for codebook quantizers; None keeps the level quantizer's default.
    """

    def __init__(self, dim: int = 256, num_quantizers: int = 4, quantizer: str = "vq",
                 quantizer_kwargs: dict | None = None, codebook_size: int | None = None):
        super().__init__()
        from vqstack.core.plugins import registry  # late: the registry imports this package to fill itself

        check_dim(dim, "dim")
        if not isinstance(num_quantizers, int) or isinstance(num_quantizers, bool) or num_quantizers < 1:
            raise ValueError(f"num_quantizers must be a positive int, got {num_quantizers!r}.")
        if quantizer == "residual":
            raise ValueError("ResidualVQ levels must be single-codebook quantizers; quantizer='residual' would "
                             "nest multi-codebook indices. Choose e.g. 'vq', 'ema', 'fsq' or 'lfq'.")
        kwargs = dict(quantizer_kwargs or {})
        if "dim" in kwargs:
            raise ValueError("Pass dim to ResidualVQ itself, not in quantizer_kwargs; every level gets the same dim.")
        if codebook_size is not None:
            if "codebook_size" in kwargs and kwargs["codebook_size"] != codebook_size:
                raise ValueError(f"codebook_size={codebook_size} conflicts with quantizer_kwargs['codebook_size']"
                                 f"={kwargs['codebook_size']}; give it once.")
            kwargs["codebook_size"] = codebook_size
        quantizers = registry("quantizer")
        levels = []
        for _ in range(num_quantizers):
            try:
                levels.append(quantizers.build(quantizer, dim=dim, **kwargs))
            except TypeError as err:
                hint = (" FSQ/LFQ derive their codebook size (from levels / bits); leave codebook_size out."
                        if "codebook_size" in kwargs else "")
                raise TypeError(f"ResidualVQ cannot build its {quantizer!r} levels: {err}{hint}") from err
        self.levels = nn.ModuleList(levels)
        self.dim, self.num_quantizers, self.quantizer = dim, num_quantizers, quantizer
        self.codebook_size = int(levels[0].codebook_size)

    @classmethod
    def example_kwargs(cls) -> dict:
        return {"dim": 8, "codebook_size": 32, "num_quantizers": 3}

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        self.check_input(z)
        residual, quantized, zf = z, torch.zeros_like(z), z.float()
        indices, loss, per_level = [], z.new_zeros((), dtype=torch.float32), []
        for i, level in enumerate(self.levels):
            out = level(residual)
            if out.indices.dim() != 3:
                raise ValueError(f"ResidualVQ level {i} ({self.quantizer!r}) returned indices of shape "
                                 f"{tuple(out.indices.shape)}; levels must be single-codebook quantizers with "
                                 f"(B, H, W) indices.")
            quantized = quantized + out.quantized
            residual = residual - out.quantized
            indices.append(out.indices)
            loss = loss + out.loss
            beta = getattr(level, "commitment_weight", 0.0)
            if i > 0 and beta > 0:  # level 0's own commitment is already z against its code
                loss = loss + beta * F.mse_loss(zf, quantized.detach().float())
            per_level.append(out.metrics)
        metrics = {}
        for key in per_level[0]:
            values = [m[key] for m in per_level if key in m]
            metrics[key] = sum(values) if key == "restarted_codes" else sum(values) / len(values)
            metrics.update({f"{key}/level{i}": m[key] for i, m in enumerate(per_level) if key in m})
        return QuantizerOutput(quantized, torch.stack(indices, dim=-1), loss, metrics)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        if indices.dim() != 4 or indices.shape[-1] != self.num_quantizers:
            raise ValueError(f"ResidualVQ.indices_to_codes expects long indices of shape (B, H, W, "
                             f"{self.num_quantizers}), got {tuple(indices.shape)}.")
        codes = self.levels[0].indices_to_codes(indices[..., 0])
        for i in range(1, self.num_quantizers):
            codes = codes + self.levels[i].indices_to_codes(indices[..., i])
        return codes
