"""taming-transformers' own modules behind vqstack's component interfaces, so the anchor trains in the same loop,
on the same data and under the same clock as vqstack's presets (benchmarks/equal_time.py).

The modules come from PyPI, not from a copy: ``pip install --no-deps taming-transformers-rom1504`` (its declared
dependencies, pytorch-lightning and omegaconf, serve taming's trainer; the modules used here need torch, numpy and
einops only).

* ``taming`` encoder: ``taming.modules.diffusionmodules.model.Encoder`` (``double_z=False``, as VQGAN uses it);
* ``taming`` decoder: ``taming.modules.diffusionmodules.model.Decoder``;
* ``taming-vq2`` quantizer: ``taming.modules.vqvae.quantize.VectorQuantizer2`` as ``VQModel`` builds it
  (beta 0.25, ``legacy=True``: the default taming ships, which puts beta on the codebook term).

vqstack's Tokenizer adds the 1x1 ``quant_conv`` / ``post_quant_conv`` that taming's ``VQModel`` has, so the whole
model is taming's.
"""
from __future__ import annotations

import torch
from torch import nn

import vqstack

INSTALL = "pip install --no-deps taming-transformers-rom1504"


def taming_modules():
    try:
        from taming.modules.diffusionmodules import model
        from taming.modules.vqvae import quantize
    except ImportError as error:  # an optional benchmark dependency
        raise SystemExit(f"The taming-transformers anchor needs its modules: {INSTALL} ({error}).") from None
    return model, quantize


def taming_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("taming") is not None


class TamingEncoder(nn.Module):
    """taming's Encoder: images (B, 3, R, R) -> (B, z_channels, R/f, R/f)."""

    def __init__(self, ch: int = 128, ch_mult=(1, 1, 2, 2, 4), num_res_blocks: int = 2, attn_resolutions=(16,),
                 resolution: int = 256, z_channels: int = 256, dropout: float = 0.0):
        super().__init__()
        model, _ = taming_modules()
        self.net = model.Encoder(ch=ch, out_ch=3, ch_mult=tuple(ch_mult), num_res_blocks=num_res_blocks,
                                 attn_resolutions=tuple(attn_resolutions), dropout=dropout, in_channels=3,
                                 resolution=resolution, z_channels=z_channels, double_z=False)
        self.in_channels, self.out_channels = 3, z_channels
        self.downsample = 2 ** (len(ch_mult) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TamingDecoder(nn.Module):
    """taming's Decoder: (B, z_channels, h, w) -> images (B, 3, h*f, w*f)."""

    def __init__(self, ch: int = 128, ch_mult=(1, 1, 2, 2, 4), num_res_blocks: int = 2, attn_resolutions=(16,),
                 resolution: int = 256, z_channels: int = 256, dropout: float = 0.0):
        super().__init__()
        model, _ = taming_modules()
        self.net = model.Decoder(ch=ch, out_ch=3, ch_mult=tuple(ch_mult), num_res_blocks=num_res_blocks,
                                 attn_resolutions=tuple(attn_resolutions), dropout=dropout, in_channels=3,
                                 resolution=resolution, z_channels=z_channels)
        self.in_channels, self.out_channels = z_channels, 3
        self.upsample = 2 ** (len(ch_mult) - 1)

    @property
    def last_layer(self) -> torch.Tensor:
        """The weight VQGAN's adaptive adversarial weight reads (unused here: the anchor trains without a GAN)."""
        return self.net.conv_out.weight

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class TamingVQ2(vqstack.Quantizer):
    """taming's VectorQuantizer2 with vqstack's output type; usage and perplexity are measured on the batch."""

    def __init__(self, dim: int = 256, codebook_size: int = 1024, beta: float = 0.25, legacy: bool = True):
        super().__init__()
        _, quantize = taming_modules()
        self.dim, self.codebook_size = dim, codebook_size
        self.vq = quantize.VectorQuantizer2(codebook_size, dim, beta=beta, legacy=legacy, sane_index_shape=True)

    def forward(self, z: torch.Tensor) -> vqstack.QuantizerOutput:
        quantized, loss, (_, _, indices) = self.vq(z)
        counts = torch.bincount(indices.flatten(), minlength=self.codebook_size).float()
        probs = counts / counts.sum()
        perplexity = torch.exp(-(probs * probs.clamp_min(1e-10).log()).sum())
        return vqstack.QuantizerOutput(quantized, indices, loss,
                                       {"perplexity": perplexity.detach(), "usage": (counts > 0).float().mean()})

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        return self.vq.embedding(indices).permute(0, 3, 1, 2)


class TamingPlugin:
    @vqstack.hookimpl
    def vqstack_register_encoders(self, registry):
        registry.register("taming", TamingEncoder)

    @vqstack.hookimpl
    def vqstack_register_decoders(self, registry):
        registry.register("taming", TamingDecoder)

    @vqstack.hookimpl
    def vqstack_register_quantizers(self, registry):
        registry.register("taming-vq2", TamingVQ2)


def register() -> None:
    """Make the anchor's components known by name (once per process)."""
    from vqstack.core.plugins import plugin_manager

    taming_modules()
    if plugin_manager().get_plugin("taming-anchor") is None:
        vqstack.register_plugin(TamingPlugin(), name="taming-anchor")


# taming's VQModel at the small preset's widths (ch 32, ch_mult 1,2,2,4: f = 8 at 64 px, one ResnetBlock per level,
# attention in the middle only), z_channels = embed_dim = 64, 1,024 codes; L1 + codebook loss only, no colour
# whitening, fp32 as taming's trainer runs, and taming's learning rate rule (4.5e-6 x batch size).
TAMING_NET = {"ch": 32, "ch_mult": [1, 2, 2, 4], "num_res_blocks": 1, "attn_resolutions": [], "z_channels": 64}
TAMING_CONFIG = {
    "tokenizer": {"encoder": {"name": "taming", "kwargs": TAMING_NET},
                  "quantizer": {"name": "taming-vq2", "kwargs": {"dim": 64, "codebook_size": 1024}},
                  "decoder": {"name": "taming", "kwargs": TAMING_NET},
                  "colour": None},
    "loss": {"reconstruction": "l1", "perceptual": 0.0, "adversarial": 0.0},
}
TAMING_LR = 4.5e-6  # per image: taming's base_learning_rate, scaled by the batch size as its main.py does
