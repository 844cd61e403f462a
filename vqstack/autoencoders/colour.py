"""Colour whitening: the tokenizer sees, and is scored on, colours with every colour axis at unit variance.

In RGB the colours of a data set are far from balanced. On the anime faces, luminance holds 88 % of the pixel
variance, the blue-orange axis 10 % and the green-magenta axis 2 %. A conv autoencoder trained in RGB learns the
axes in that order, and at a CPU budget it never learns the last one: green, purple, red and pink hair come back
grey-blue or orange whatever the quantizer, codebook size or loss (benchmarks/colour_ablation.py measures it). The
signal of an axis reaches the weights through the input and through the loss, so both are balanced: the encoder
reads whitened images, the decoder writes whitened images that the tokenizer turns back into RGB, and the pixel
loss compares whitened images (:meth:`ColourWhitening.forward` on both sides). Everything outside the tokenizer
stays in RGB.

The transform is ZCA whitening (``W = V diag(1/sqrt(eigenvalues + eps)) V^T``) of the training images' pixel
colours, measured once by the training recipe and stored in the tokenizer's config, so a saved tokenizer decodes
to the same colours anywhere.
"""
from __future__ import annotations

import torch
from torch import nn

EPS = 1e-4  # added to the colour covariance's eigenvalues: a grey-only data set stays finite


class ColourWhitening(nn.Module):
    """RGB images (B, 3, H, W) -> whitened colours and back: ``(x - mean) @ matrix`` per pixel."""

    def __init__(self, mean, matrix):
        super().__init__()
        mean, matrix = torch.as_tensor(mean, dtype=torch.float32), torch.as_tensor(matrix, dtype=torch.float32)
        if mean.shape != (3,) or matrix.shape != (3, 3):
            raise ValueError(f"colour whitening needs a mean of 3 values and a 3x3 matrix, got {tuple(mean.shape)} "
                             f"and {tuple(matrix.shape)}.")
        if torch.linalg.matrix_rank(matrix) < 3:
            raise ValueError("the colour whitening matrix is singular: it could not be undone.")
        self.register_buffer("mean", mean)
        self.register_buffer("matrix", matrix)
        # kept beside the matrix (not saved): inverting in every decode would sync the host on a GPU
        self.register_buffer("inverse_matrix", torch.linalg.inv(matrix.double()).float(), persistent=False)
        self.register_load_state_dict_post_hook(lambda module, keys: module._update_inverse())

    @torch.no_grad()
    def _update_inverse(self) -> None:
        self.inverse_matrix.copy_(torch.linalg.inv(self.matrix.double()).float())

    @classmethod
    def from_images(cls, images: torch.Tensor, eps: float = EPS) -> "ColourWhitening":
        """ZCA whitening of the pixel colours of ``images`` (B, 3, H, W)."""
        pixels = images.detach().double().permute(0, 2, 3, 1).reshape(-1, 3)
        mean = pixels.mean(0)
        centred = pixels - mean
        eigenvalues, vectors = torch.linalg.eigh(centred.T @ centred / len(centred))
        matrix = vectors @ torch.diag((eigenvalues.clamp_min(0) + eps).rsqrt()) @ vectors.T
        return cls(mean.float(), matrix.float())

    @property
    def config(self) -> dict:
        return {"mean": self.mean.tolist(), "matrix": self.matrix.tolist()}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """RGB -> whitened."""
        return self._transform(images - self.mean.view(1, 3, 1, 1).to(images), self.matrix)

    def inverse(self, whitened: torch.Tensor) -> torch.Tensor:
        """Whitened -> RGB."""
        return self._transform(whitened, self.inverse_matrix) + self.mean.view(1, 3, 1, 1).to(whitened)

    @staticmethod
    def _transform(images: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
        # a pixel is a row vector: out[c] = sum_k in[k] * matrix[k, c]
        return torch.einsum("bkhw,kc->bchw", images, matrix.to(images))
