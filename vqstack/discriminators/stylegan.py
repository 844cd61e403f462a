"""StyleGAN2-like residual discriminator (Karras et al. 2020), in the form MaskGIT and LlamaGen use for VQGANs.

Residual blocks halve the resolution with a blur (FIR filter [1, 3, 3, 1]) before subsampling, so the
discriminator sees fewer aliasing artefacts; a conv and two linear layers turn the final maps into one logit.
Unlike StyleGAN2 it has no equalized learning rate and no minibatch-stddev layer (MaskGIT and LlamaGen drop them
too; the stddev layer also couples the samples of a batch).

Sizes: blocks halve the input while the result stays even and at least 4 pixels, so the final maps are 4x4 for
powers of two (32, 64, 256) and e.g. 6x6 for 96 or 48. Any ``resolution = s * 2**k`` with s in {4, 5, 6, 7} works.
The final linear layer sees the whole map, so inputs must have exactly ``resolution`` pixels a side.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class BlurDownsample(nn.Module):
    """Low-pass filter with the separable FIR kernel [1, 3, 3, 1] / 8 (StyleGAN2's), then keep every second pixel.

    One pixel of zero padding each side makes the output exactly H/2 x W/2 for even H and W."""

    def __init__(self, kernel=(1.0, 3.0, 3.0, 1.0)):
        super().__init__()
        k = torch.tensor(kernel, dtype=torch.float32)
        k = torch.outer(k, k)
        # A fixed filter, not a parameter; non-persistent so checkpoints only hold learned weights.
        self.register_buffer("kernel", (k / k.sum())[None, None], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        weight = self.kernel.to(x.dtype).expand(channels, 1, -1, -1)
        return F.conv2d(x, weight, stride=2, padding=1, groups=channels)


class DiscriminatorBlock(nn.Module):
    """conv3x3 -> LeakyReLU -> blur-downsample -> conv3x3 -> LeakyReLU, plus a blurred 1x1 skip, scaled by 1/sqrt(2)
    so the residual sum keeps unit variance."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, in_channels, 3, padding=1)
        self.down = BlurDownsample()
        self.conv2 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.skip = nn.Sequential(BlurDownsample(), nn.Conv2d(in_channels, out_channels, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.conv1(x), 0.2)
        h = F.leaky_relu(self.conv2(self.down(h)), 0.2)
        return (h + self.skip(x)) / math.sqrt(2)


def final_size(resolution: int) -> tuple[int, int]:
    """(number of halving blocks, final map size) for ``resolution``; halve while the result is even and >= 4."""
    blocks, size = 0, resolution
    while size % 2 == 0 and size // 2 >= 4:
        size, blocks = size // 2, blocks + 1
    if not 4 <= size <= 7:
        raise ValueError(f"StyleGANDiscriminator cannot reduce resolution {resolution} to a small map: it halves "
                         f"while the size stays even and >= 4 and ends at {size}x{size}. Use s * 2**k pixels with "
                         f"s in 4..7 (e.g. 32, 48, 64, 80, 96, 128, 256).")
    return blocks, size


class StyleGANDiscriminator(nn.Module):
    """images (B, in_channels, resolution, resolution) in [-1, 1] -> one logit per image, (B, 1)."""

    def __init__(
        self,
        in_channels: int = 3,  # image channels
        ch: int = 64,  # width at full resolution; doubles with every block
        max_channels: int = 512,  # cap on the width (StyleGAN2 and LlamaGen use 512)
        resolution: int = 256,  # input size; fixes the number of blocks and the final linear layer
    ):
        super().__init__()
        num_blocks, size = final_size(resolution)
        if ch < 1 or max_channels < 1:
            raise ValueError(f"ch and max_channels must be >= 1, got ch={ch}, max_channels={max_channels}.")
        self.in_channels, self.resolution = in_channels, resolution
        widths = [min(ch * 2 ** i, max_channels) for i in range(num_blocks + 1)]

        self.conv_in = nn.Conv2d(in_channels, widths[0], 3, padding=1)
        self.blocks = nn.ModuleList(DiscriminatorBlock(widths[i], widths[i + 1]) for i in range(num_blocks))
        self.conv_out = nn.Conv2d(widths[-1], widths[-1], 3, padding=1)
        self.fc = nn.Linear(widths[-1] * size * size, widths[-1])
        self.logit = nn.Linear(widths[-1], 1)

    @classmethod
    def example_kwargs(cls) -> dict:
        """Tiny sizes for tests: 32x32 inputs, three blocks down to 4x4."""
        return {"ch": 16, "max_channels": 64, "resolution": 32}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != (self.resolution, self.resolution):
            raise ValueError(f"StyleGANDiscriminator was built for {self.resolution}x{self.resolution} inputs, got "
                             f"{tuple(x.shape[-2:])}; build it with resolution={x.shape[-1]} (square inputs).")
        h = F.leaky_relu(self.conv_in(x), 0.2)
        for block in self.blocks:
            h = block(h)
        h = F.leaky_relu(self.conv_out(h), 0.2)
        h = F.leaky_relu(self.fc(h.flatten(1)), 0.2)
        return self.logit(h)
