"""Built-in encoders and decoders, registered through the same hooks a third-party plugin uses."""
from typing import TYPE_CHECKING

from vqstack.core.hookspecs import hookimpl
from vqstack.lazy import lazy_exports

__all__ = ["Encoder", "Decoder", "ResnetBlock", "AttnBlock", "Downsample", "Upsample", "Normalize"]

# Imported on first use: loading the plugins (``vqstack plugins``) imports no torch. See vqstack.lazy.
__getattr__, __dir__ = lazy_exports(__name__, {
    "Encoder": "conv", "Decoder": "conv",
    "ResnetBlock": "blocks", "AttnBlock": "blocks", "Downsample": "blocks", "Upsample": "blocks",
    "Normalize": "blocks",
})


@hookimpl
def vqstack_register_encoders(registry):
    registry.register("conv", "vqstack.autoencoders.conv:Encoder")


@hookimpl
def vqstack_register_decoders(registry):
    registry.register("conv", "vqstack.autoencoders.conv:Decoder")


if TYPE_CHECKING:  # what static tools and IDEs see; never runs
    from .blocks import AttnBlock, Downsample, Normalize, ResnetBlock, Upsample
    from .conv import Decoder, Encoder
