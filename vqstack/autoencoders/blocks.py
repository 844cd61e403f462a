"""Building blocks of the convolutional autoencoder, as in taming-transformers (VQGAN) and LDM.

Attribute names (``norm1``, ``conv1``, ``nin_shortcut``, ``q``/``k``/``v``/``proj_out``, ...) follow taming's, so
the state-dict keys of :class:`~vqstack.autoencoders.conv.Encoder` / ``Decoder`` match taming's ``encoder.*`` /
``decoder.*`` keys.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def group_count(channels: int, max_groups: int = 32) -> int:
    """The largest number of groups <= ``max_groups`` that divides ``channels`` (32 for taming's sizes).

    Taming hard-codes 32 groups, which fails for small test networks (e.g. 16 channels); this keeps 32 wherever
    taming's configs would work and degrades gracefully elsewhere."""
    for groups in range(min(max_groups, channels), 0, -1):
        if channels % groups == 0:
            return groups
    raise ValueError(f"channels must be positive, got {channels}")


def Normalize(channels: int, max_groups: int = 32) -> nn.GroupNorm:
    """GroupNorm with taming's eps (1e-6) and affine parameters."""
    return nn.GroupNorm(num_groups=group_count(channels, max_groups), num_channels=channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    """Pre-activation residual block: (GroupNorm, SiLU, conv3x3) x 2, plus a 1x1 shortcut when channels change."""

    def __init__(self, in_channels: int, out_channels: int | None = None, dropout: float = 0.0,
                 norm_groups: int = 32):
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        self.in_channels, self.out_channels = in_channels, out_channels
        self.norm1 = Normalize(in_channels, norm_groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = Normalize(out_channels, norm_groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        # taming's default shortcut (conv_shortcut=False) is a 1x1 "network in network" projection
        self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.nin_shortcut(x) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all spatial positions, with a residual connection.

    q, k, v and the output projection are 1x1 convolutions as in taming (same weights, same keys); the attention
    itself runs through ``F.scaled_dot_product_attention`` (flash / memory-efficient kernels where available),
    whose default scale 1/sqrt(C) is taming's."""

    def __init__(self, channels: int, norm_groups: int = 32):
        super().__init__()
        self.norm = Normalize(channels, norm_groups)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        y = self.norm(x)
        # (B, C, H, W) -> (B, 1 head, H*W tokens, C)
        q, k, v = (t.reshape(b, 1, c, h * w).transpose(2, 3) for t in (self.q(y), self.k(y), self.v(y)))
        y = F.scaled_dot_product_attention(q, k, v)
        y = y.transpose(2, 3).reshape(b, c, h, w)
        return x + self.proj_out(y)


class Downsample(nn.Module):
    """Halve H and W: a stride-2 3x3 conv (``with_conv``) or 2x2 average pooling.

    The conv pads only right/bottom by one (taming's asymmetric padding), so H/2 is exact for even sizes and the
    weights stay compatible with taming checkpoints."""

    def __init__(self, channels: int, with_conv: bool = True):
        super().__init__()
        self.with_conv = with_conv
        if with_conv:
            self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.with_conv:
            return self.conv(F.pad(x, (0, 1, 0, 1)))
        return F.avg_pool2d(x, kernel_size=2, stride=2)


class Upsample(nn.Module):
    """Double H and W: nearest-neighbour upsampling, then a 3x3 conv (``with_conv``) to smooth the blocks."""

    def __init__(self, channels: int, with_conv: bool = True):
        super().__init__()
        self.with_conv = with_conv
        if with_conv:
            self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.conv(x) if self.with_conv else x
