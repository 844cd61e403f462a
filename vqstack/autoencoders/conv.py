"""Taming-style convolutional ResNet encoder and decoder (VQGAN; Esser et al. 2021).

Defaults are taming's f16 config (``ch=128, ch_mult=(1,1,2,2,4), num_res_blocks=2, attn_resolutions=(16,),
resolution=256``, 256 latent channels): a 256x256 image becomes a 16x16 grid.

Conventions:

* ``len(ch_mult)`` levels, each ``num_res_blocks`` ResnetBlocks (the decoder uses one more, like taming), with a
  2x down/upsampling between levels: the factor is ``f = 2 ** (len(ch_mult) - 1)``.
* ``attn_resolutions`` are **feature-map sizes for an input of size** ``resolution``, as in taming: with
  ``resolution=256`` and ``attn_resolutions=(16,)`` attention runs at the level whose maps are 16x16 for a 256x256
  input. The networks are fully convolutional, so other input sizes work too (e.g. 96x96 with an f=8 model trained
  at 64); attention then stays at the same *level*. Encoder and decoder use the same convention, so the same
  kwargs give mirrored networks. A size that matches no level is an error (taming silently ignores it).
* The middle (lowest resolution) always has ResnetBlock-Attention-ResnetBlock unless ``mid_attention=False``.
* The decoder ends with a plain conv, no tanh (as taming): its output is compared with images in [-1, 1] by the
  losses, and a tanh would flatten the gradient of saturated pixels. ``Tokenizer.decode`` clamps to [-1, 1].
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import AttnBlock, Downsample, Normalize, ResnetBlock, Upsample


def level_resolutions(ch_mult, num_res_blocks: int, attn_resolutions, resolution: int, ch: int) -> list[int]:
    """Validate a config shared by Encoder and Decoder; return the feature size of each level for ``resolution``."""
    if len(ch_mult) == 0:
        raise ValueError("ch_mult is empty; give one channel multiplier per level, e.g. (1, 1, 2, 2, 4) for f=16.")
    if any(int(m) != m or m < 1 for m in ch_mult):
        raise ValueError(f"ch_mult entries must be positive integers, got {list(ch_mult)}.")
    if ch < 1 or num_res_blocks < 1:
        raise ValueError(f"ch and num_res_blocks must be >= 1, got ch={ch}, num_res_blocks={num_res_blocks}.")
    factor = 2 ** (len(ch_mult) - 1)
    if resolution % factor:
        raise ValueError(f"resolution {resolution} is not divisible by the down/upsampling factor {factor} "
                         f"(2 ** (len(ch_mult) - 1) with ch_mult={list(ch_mult)}); change resolution or ch_mult.")
    levels = [resolution // 2 ** i for i in range(len(ch_mult))]
    unknown = sorted(set(attn_resolutions) - set(levels))
    if unknown:
        raise ValueError(f"attn_resolutions {unknown} match no level: with resolution={resolution} and "
                         f"{len(ch_mult)} levels the feature sizes are {levels}. Pick from those, or pass "
                         f"attn_resolutions=[] (the middle block keeps its attention unless mid_attention=False).")
    return levels


def check_divisible(x: torch.Tensor, factor: int, what: str) -> None:
    if x.shape[-2] % factor or x.shape[-1] % factor:
        raise ValueError(f"{what}: input size {tuple(x.shape[-2:])} is not divisible by the factor {factor}; "
                         f"crop or pad images to a multiple of {factor}.")


class Encoder(nn.Module):
    """images (B, in_channels, H, W) -> features (B, out_channels, H/f, W/f)."""

    def __init__(
        self,
        in_channels: int = 3,  # image channels
        ch: int = 128,  # base width; level i has ch * ch_mult[i] channels
        ch_mult: Sequence[int] = (1, 1, 2, 2, 4),  # one multiplier per level; f = 2 ** (len(ch_mult) - 1)
        num_res_blocks: int = 2,  # ResnetBlocks per level
        attn_resolutions: Sequence[int] = (16,),  # feature sizes (for an input of `resolution`) with attention
        resolution: int = 256,  # nominal input size, the reference for attn_resolutions
        out_channels: int = 256,  # feature channels (taming's z_channels)
        dropout: float = 0.0,  # dropout inside the ResnetBlocks
        mid_attention: bool = True,  # attention between the two middle ResnetBlocks
        resamp_with_conv: bool = True,  # strided conv (True) or average pooling (False) to downsample
        norm_groups: int = 32,  # GroupNorm groups at most (taming: 32); 32 groups of 32 channels are InstanceNorm
    ):
        super().__init__()
        ch_mult, attn_resolutions = tuple(ch_mult), tuple(attn_resolutions)  # JSON configs give lists
        levels = level_resolutions(ch_mult, num_res_blocks, attn_resolutions, resolution, ch)
        ch_mult = tuple(int(m) for m in ch_mult)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.downsample = 2 ** (len(ch_mult) - 1)

        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        block_in = ch
        self.down = nn.ModuleList()
        for i_level, mult in enumerate(ch_mult):
            level = nn.Module()
            level.block, level.attn = nn.ModuleList(), nn.ModuleList()
            block_out = ch * mult
            for _ in range(num_res_blocks):
                level.block.append(ResnetBlock(block_in, block_out, dropout, norm_groups))
                block_in = block_out
                if levels[i_level] in attn_resolutions:
                    level.attn.append(AttnBlock(block_in, norm_groups))
            if i_level != len(ch_mult) - 1:
                level.downsample = Downsample(block_in, resamp_with_conv)
            self.down.append(level)

        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(block_in, block_in, dropout, norm_groups)
        self.mid.attn_1 = AttnBlock(block_in, norm_groups) if mid_attention else nn.Identity()
        self.mid.block_2 = ResnetBlock(block_in, block_in, dropout, norm_groups)

        self.norm_out = Normalize(block_in, norm_groups)
        self.conv_out = nn.Conv2d(block_in, out_channels, 3, padding=1)

    @classmethod
    def example_kwargs(cls) -> dict:
        """Tiny sizes for tests: two levels (f=2), attention at the second level and in the middle."""
        return {"ch": 32, "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [16], "resolution": 32,
                "out_channels": 16}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_divisible(x, self.downsample, "Encoder")
        h = self.conv_in(x)
        for level in self.down:
            for i, block in enumerate(level.block):
                h = block(h)
                if len(level.attn) > 0:
                    h = level.attn[i](h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """features (B, in_channels, h, w) -> images (B, out_channels, h*f, w*f), not squashed (no tanh)."""

    def __init__(
        self,
        in_channels: int = 256,  # feature channels it receives (taming's z_channels)
        ch: int = 128,  # base width; level i has ch * ch_mult[i] channels
        ch_mult: Sequence[int] = (1, 1, 2, 2, 4),  # one multiplier per level, same as the encoder's
        num_res_blocks: int = 2,  # the decoder uses num_res_blocks + 1 ResnetBlocks per level (taming)
        attn_resolutions: Sequence[int] = (16,),  # feature sizes (for an output of `resolution`) with attention
        resolution: int = 256,  # nominal output size, the reference for attn_resolutions
        out_channels: int = 3,  # image channels
        dropout: float = 0.0,  # dropout inside the ResnetBlocks
        mid_attention: bool = True,  # attention between the two middle ResnetBlocks
        resamp_with_conv: bool = True,  # 3x3 conv after nearest-neighbour upsampling
        norm_groups: int = 32,  # GroupNorm groups at most (taming: 32)
    ):
        super().__init__()
        ch_mult, attn_resolutions = tuple(ch_mult), tuple(attn_resolutions)  # JSON configs give lists
        levels = level_resolutions(ch_mult, num_res_blocks, attn_resolutions, resolution, ch)
        ch_mult = tuple(int(m) for m in ch_mult)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.upsample = 2 ** (len(ch_mult) - 1)

        block_in = ch * ch_mult[-1]
        self.conv_in = nn.Conv2d(in_channels, block_in, 3, padding=1)
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(block_in, block_in, dropout, norm_groups)
        self.mid.attn_1 = AttnBlock(block_in, norm_groups) if mid_attention else nn.Identity()
        self.mid.block_2 = ResnetBlock(block_in, block_in, dropout, norm_groups)

        # Built from the lowest resolution up but stored by level (up[0] is full resolution), as taming does,
        # so state-dict keys match taming's.
        up = []
        for i_level in reversed(range(len(ch_mult))):
            level = nn.Module()
            level.block, level.attn = nn.ModuleList(), nn.ModuleList()
            block_out = ch * ch_mult[i_level]
            for _ in range(num_res_blocks + 1):
                level.block.append(ResnetBlock(block_in, block_out, dropout, norm_groups))
                block_in = block_out
                if levels[i_level] in attn_resolutions:
                    level.attn.append(AttnBlock(block_in, norm_groups))
            if i_level != 0:
                level.upsample = Upsample(block_in, resamp_with_conv)
            up.insert(0, level)
        self.up = nn.ModuleList(up)

        self.norm_out = Normalize(block_in, norm_groups)
        self.conv_out = nn.Conv2d(block_in, out_channels, 3, padding=1)

    @classmethod
    def example_kwargs(cls) -> dict:
        """Tiny sizes for tests, mirroring Encoder.example_kwargs()."""
        return {"in_channels": 16, "ch": 32, "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [16],
                "resolution": 32}

    @property
    def last_layer(self) -> torch.Tensor:
        """The final conv's weight: VQGAN's adaptive adversarial weight compares gradients on it."""
        return self.conv_out.weight

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(self.conv_in(z))))
        for level in reversed(self.up):
            for i, block in enumerate(level.block):
                h = block(h)
                if len(level.attn) > 0:
                    h = level.attn[i](h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))
