"""The codebook-lookup restorer of CodeFormer's second stage (Zhou et al. 2022): a copy of the tokenizer's encoder
reads the degraded image, and a transformer over its feature grid predicts the clean image's code at each position.

Training (recipes/restore_anime.py): cross-entropy to the clean image's codes plus an L2 loss pulling the encoder's
features towards the clean image's, with the tokenizer's codebook and decoder frozen.
"""
from __future__ import annotations

import torch
from torch import nn

from ..autoencoders.colour import ColourWhitening
from ..core.plugins import registry
from .base import Restorer, RestorerOutput, tokenizer_part


class CodeFormerRestorer(Restorer):
    """degraded images (B, 3, S, S) in [-1, 1] -> code logits and features over the (S/f, S/f) grid.

    Args:
        tokenizer: the tokenizer's config (``Tokenizer.config``): its encoder is rebuilt here, its quantizer gives
            the code count and feature size, its colour whitening is applied first as in the tokenizer.
        image_size: the image side the tokenizer was trained at; positions are learned for that grid.
        width: the transformer's hidden size.
        depth: the number of transformer layers.
        heads: attention heads per layer (width must divide by it).
        mlp_ratio: the feed-forward size as a multiple of width.
        dropout: dropout in the transformer layers while training.
    """

    def __init__(self, tokenizer: dict, image_size: int, width: int = 256, depth: int = 4, heads: int = 8,
                 mlp_ratio: int = 4, dropout: float = 0.0):
        super().__init__()
        entry = tokenizer_part(tokenizer, "encoder")
        self.encoder = registry("encoder").build(entry["name"], **entry.get("kwargs", {}))
        self.init_tokenizer(tokenizer, image_size, self.encoder.downsample)
        if width % heads:
            raise ValueError(f"width {width} must be divisible by heads {heads}.")
        colour = tokenizer.get("colour")
        self.colour = None if colour is None else ColourWhitening(**colour)
        self.quant_proj = nn.Conv2d(self.encoder.out_channels, self.dim, 1)  # the tokenizer's, copied
        height, width_grid = self.grid
        self.in_proj = nn.Linear(self.encoder.out_channels, width)
        self.positions = nn.Parameter(torch.randn(1, height * width_grid, width) * 0.02)
        layer = nn.TransformerEncoderLayer(width, heads, mlp_ratio * width, dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        # no nested-tensor fast path: every grid is full, and it warns for norm_first layers
        self.transformer = nn.TransformerEncoder(layer, depth, norm=nn.LayerNorm(width), enable_nested_tensor=False)
        self.head = nn.Linear(width, self.codebook_size)

    @classmethod
    def example_kwargs(cls) -> dict:
        """A tiny tokenizer and transformer, for the conformance checks."""
        conv = {"ch": 8, "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [], "resolution": 16,
                "mid_attention": False, "norm_groups": 1}
        tokenizer = {"encoder": {"name": "conv", "kwargs": {**conv, "out_channels": 8}},
                     "quantizer": {"name": "vq", "kwargs": {"dim": 4, "codebook_size": 16}},
                     "decoder": {"name": "conv", "kwargs": {**conv, "in_channels": 8}}}
        return {"tokenizer": tokenizer, "image_size": 16, "width": 32, "depth": 1, "heads": 2}

    def init_from_tokenizer(self, tokenizer) -> None:
        """Start from the tokenizer's encoder, projection and colour whitening (CodeFormer fine-tunes its encoder
        from the stage-1 one)."""
        self.encoder.load_state_dict(tokenizer.encoder.state_dict())
        self.quant_proj.load_state_dict(tokenizer.quant_proj.state_dict())
        if (self.colour is None) != (tokenizer.colour is None):
            raise ValueError("The restorer and the tokenizer disagree on colour whitening: build the restorer from "
                             "this tokenizer's config.")
        if self.colour is not None:
            self.colour.load_state_dict(tokenizer.colour.state_dict())

    def forward(self, images: torch.Tensor) -> RestorerOutput:
        self.check_images(images)
        if self.colour is not None:
            images = self.colour(images)
        hidden = self.encoder(images)                                   # (B, C, h, w)
        batch, _, height, width = hidden.shape
        sequence = self.in_proj(hidden.flatten(2).transpose(1, 2)) + self.positions
        logits = self.head(self.transformer(sequence))                  # (B, h*w, K)
        logits = logits.transpose(1, 2).reshape(batch, self.codebook_size, height, width)
        return RestorerOutput(logits=logits, features=self.quant_proj(hidden))
