"""The stage-1 tokenizer: encoder -> projection -> quantizer -> projection -> decoder."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .core.modes import evaluating
from .core.plugins import registry
from .autoencoders.colour import ColourWhitening
from .core.serialization import load_weights, read_config, save_weights, spec_of, write_config
from .version import __version__

PARTS = ("encoder", "quantizer", "decoder")


@dataclass
class TokenizerOutput:
    recon: torch.Tensor  # (B, 3, H, W), not clamped, for the losses
    indices: torch.Tensor  # long token grid (B, h, w) [or (B, h, w, Q) for multi-codebook quantizers]
    loss: torch.Tensor  # the quantizer's own loss (commitment / codebook / entropy)
    # the quantizer's metrics (perplexity, usage, ...): values float(v) reads, detached 0-dim tensors for the
    # built-ins, so the forward never waits on the device; convert at log time
    metrics: dict[str, torch.Tensor | float] = field(default_factory=dict)


def _single_codebook(quantizer: nn.Module) -> bool:
    """Whether ``quantizer`` is known to take (B, h, w) indices: vqstack's own quantizers without
    ``num_quantizers``. A plugin's may be multi-codebook without saying so."""
    return type(quantizer).__module__.startswith("vqstack.")


class Tokenizer(nn.Module):
    """Images in [-1, 1] <-> integer token grids.

    1x1 convolutions map the encoder's channels to the quantizer's ``dim`` and back to the decoder's input
    channels (taming's ``quant_conv`` / ``post_quant_conv``), so any encoder, quantizer and decoder combine.
    """

    def __init__(self, encoder: nn.Module, quantizer: nn.Module, decoder: nn.Module, colour: dict | None = None):
        super().__init__()
        if encoder.downsample != decoder.upsample:
            raise ValueError(f"The encoder downsamples by {encoder.downsample} but the decoder upsamples by "
                             f"{decoder.upsample}; give them the same factor (same ch_mult length for 'conv').")
        self.encoder = encoder
        self.quantizer = quantizer
        self.decoder = decoder
        self.quant_proj = nn.Conv2d(encoder.out_channels, quantizer.dim, 1)
        self.post_quant_proj = nn.Conv2d(quantizer.dim, decoder.in_channels, 1)
        # {"mean", "matrix"}: the encoder reads and the decoder writes whitened colours (autoencoders/colour.py)
        self.colour = None if colour is None else ColourWhitening(**colour)

    @property
    def downsample(self) -> int:
        return self.encoder.downsample

    # --- the pieces of the data flow ---------------------------------------------------------------------

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """images -> the projected encoder features (B, quantizer.dim, h, w) the quantizer reads."""
        if self.colour is not None:
            images = self.colour(images)
        return self.quant_proj(self.encoder(images))

    def quantize(self, images: torch.Tensor):
        """images -> the quantizer's output on the projected encoder features."""
        return self.quantizer(self.features(images))

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Quantized codes (B, dim, h, w) -> images, not clamped."""
        images = self.decoder(self.post_quant_proj(codes))
        return images if self.colour is None else self.colour.inverse(images)

    def forward(self, images: torch.Tensor) -> TokenizerOutput:
        q = self.quantize(images)
        return TokenizerOutput(recon=self.decode_codes(q.quantized), indices=q.indices, loss=q.loss,
                               metrics=q.metrics)

    # --- inference ---------------------------------------------------------------------------------------

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) in [-1, 1] -> long tokens (B, H/f, W/f). Never updates the codebook."""
        with evaluating(self):
            return self.quantize(images).indices

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """long tokens from :meth:`encode` -> images (B, 3, H, W) in [-1, 1].

        Tokens are (B, h, w), or (B, h, w, Q) for a quantizer with ``num_quantizers`` codebooks (ResidualVQ),
        each in 0..codebook_size-1; anything else is a ValueError that says what was expected."""
        self.check_tokens(tokens)
        with evaluating(self):
            return self.decode_codes(self.quantizer.indices_to_codes(tokens)).clamp(-1, 1)

    def token_shape(self) -> str:
        """The token layout :meth:`decode` takes: "(B, h, w)", "(B, h, w, Q)" with the quantizer's
        ``num_quantizers`` as Q, or both for a plugin quantizer that declares neither (it may be multi-codebook)."""
        levels = getattr(self.quantizer, "num_quantizers", None)
        if levels is not None:
            return f"(B, h, w, {levels})"
        return "(B, h, w)" if _single_codebook(self.quantizer) else "(B, h, w) or (B, h, w, Q)"

    def check_tokens(self, tokens) -> None:
        """Raise one ValueError naming the expected dtype, shape and range unless ``tokens`` fits them. Reads the
        tokens' min and max back to the host: for decoding, not for a training step."""
        size = self.quantizer.codebook_size
        expected = (f"Tokenizer.decode expects long (torch.int64) tokens of shape {self.token_shape()} with values "
                    f"in 0..{size - 1} (codebook_size {size})")
        if not isinstance(tokens, torch.Tensor):
            raise ValueError(f"{expected}; got a {type(tokens).__name__}.")
        low = high = None
        got = f"got {tokens.dtype} tokens of shape {tuple(tokens.shape)}"
        if tokens.numel() and not tokens.is_complex():
            low, high = torch.stack([tokens.min(), tokens.max()]).tolist()  # one transfer
            got += f" with min {low} and max {high}"
        in_range = low is None or (low >= 0 and high < size)
        if not (tokens.dtype == torch.long and self._token_dims_fit(tokens) and in_range):
            raise ValueError(f"{expected}; {got}.")

    def _token_dims_fit(self, tokens: torch.Tensor) -> bool:
        levels = getattr(self.quantizer, "num_quantizers", None)
        if levels is not None:
            return tokens.dim() == 4 and tokens.shape[-1] == levels
        return tokens.dim() == 3 or (tokens.dim() == 4 and not _single_codebook(self.quantizer))

    # --- configuration and weights -------------------------------------------------------------------------

    @classmethod
    def from_config(cls, config: dict) -> "Tokenizer":
        """Build from ``{"encoder": {"name": ..., "kwargs": {...}}, "quantizer": ..., "decoder": ...}``.

        A part may also be given as a bare name (``"quantizer": "fsq"``), built with its defaults."""
        parts = {}
        for part in PARTS:
            if part not in config:
                raise ValueError(f"Tokenizer config lacks {part!r}; it needs {', '.join(PARTS)}.")
            entry = config[part]
            entry = {"name": entry} if isinstance(entry, str) else entry
            parts[part] = registry(part).build(entry["name"], **entry.get("kwargs", {}))
        colour = config.get("colour")
        if isinstance(colour, str):
            raise ValueError(f"Tokenizer config has colour {colour!r}: the training recipe replaces 'whiten' with "
                             "the data's colour statistics; give {'mean': [3 values], 'matrix': [3x3]} or null.")
        return cls(**parts, colour=colour)

    @property
    def config(self) -> dict:
        config = {part: spec_of(getattr(self, part), part) for part in PARTS}
        if self.colour is not None:
            config["colour"] = self.colour.config
        return config

    def save_pretrained(self, directory) -> None:
        """Write ``config.json`` (registry names and arguments) and ``model.safetensors``."""
        config = {**self.config, "vqstack_version": __version__}
        save_weights(self, write_config(directory, config))

    @classmethod
    def from_pretrained(cls, directory, device="cpu") -> "Tokenizer":
        """Rebuild from ``save_pretrained`` output; parts from plugins need those plugins installed."""
        tokenizer = cls.from_config(read_config(directory))
        load_weights(tokenizer, directory, device)
        return tokenizer.to(device)
