"""Built-in encoders and decoders, registered through the same hooks a third-party plugin uses."""
from vqstack.core.hookspecs import hookimpl

from .blocks import AttnBlock, Downsample, Normalize, ResnetBlock, Upsample
from .conv import Decoder, Encoder

__all__ = ["Encoder", "Decoder", "ResnetBlock", "AttnBlock", "Downsample", "Upsample", "Normalize"]


@hookimpl
def vqstack_register_encoders(registry):
    registry.register("conv", Encoder)


@hookimpl
def vqstack_register_decoders(registry):
    registry.register("conv", Decoder)
