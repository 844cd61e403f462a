"""PatchGAN discriminator: pix2pix's NLayerDiscriminator, as used by taming-transformers (VQGAN) and LlamaGen.

Each output logit judges one overlapping patch (70x70 pixels for the default 3 layers), so the GAN loss sharpens
local texture while the reconstruction and perceptual losses take care of global structure.
"""
from __future__ import annotations

from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ..autoencoders.blocks import group_count

NORMS = ("batch", "group", "none", "spectral")


class PatchDiscriminator(nn.Module):
    """images (B, in_channels, H, W) in [-1, 1] -> patch logits (B, 1, h, w).

    The logits are (H / 2 ** num_layers - 2) on a side: 30x30 for 256x256 inputs and 3 layers; inputs need at least
    3 * 2 ** num_layers pixels a side (24 for 3 layers).
    """

    def __init__(
        self,
        in_channels: int = 3,  # image channels
        ch: int = 64,  # width of the first conv; doubles per layer, capped at 8 * ch
        num_layers: int = 3,  # stride-2 conv layers (pix2pix's n_layers); more layers = larger patches
        norm: str = "batch",  # "batch" (pix2pix/taming), "group", "none", or "spectral" (spectral norm, no layer norm)
    ):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"Unknown norm {norm!r} for PatchDiscriminator; choose one of {', '.join(NORMS)}.")
        if num_layers < 1 or ch < 1:
            raise ValueError(f"num_layers and ch must be >= 1, got num_layers={num_layers}, ch={ch}.")
        self.in_channels, self.num_layers, self.norm = in_channels, num_layers, norm

        def conv(c_in, c_out, stride, bias=True):
            layer = nn.Conv2d(c_in, c_out, kernel_size=4, stride=stride, padding=1, bias=bias)
            nn.init.normal_(layer.weight, 0.0, 0.02)  # pix2pix / taming init
            if bias:
                nn.init.zeros_(layer.bias)
            # wrap after the init, so spectral norm's power-iteration vectors start from the final weight
            return spectral_norm(layer) if norm == "spectral" else layer

        def norm_layer(channels):
            if norm == "none" or norm == "spectral":
                return nn.Identity()
            layer = nn.BatchNorm2d(channels) if norm == "batch" else nn.GroupNorm(group_count(channels), channels)
            nn.init.normal_(layer.weight, 1.0, 0.02)  # pix2pix / taming init
            nn.init.zeros_(layer.bias)
            return layer

        use_bias = norm != "batch"  # BatchNorm's shift makes a conv bias redundant (pix2pix)
        layers = [conv(in_channels, ch, 2), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, num_layers + 1):
            prev, mult = mult, min(2 ** n, 8)
            stride = 2 if n < num_layers else 1  # the last hidden layer keeps the size, as in pix2pix
            layers += [conv(ch * prev, ch * mult, stride, use_bias), norm_layer(ch * mult), nn.LeakyReLU(0.2, True)]
        layers.append(conv(ch * mult, 1, 1))  # one logit per patch
        self.main = nn.Sequential(*layers)

    @classmethod
    def example_kwargs(cls) -> dict:
        """Tiny sizes for tests (works from 12x12 inputs)."""
        return {"ch": 16, "num_layers": 2}

    def forward(self, x):
        min_size = 3 * 2 ** self.num_layers
        if min(x.shape[-2:]) < min_size:
            raise ValueError(f"PatchDiscriminator with num_layers={self.num_layers} needs inputs of at least "
                             f"{min_size}x{min_size}, got {tuple(x.shape[-2:])}; use fewer layers.")
        return self.main(x)
