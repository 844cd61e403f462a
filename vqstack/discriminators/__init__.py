"""Built-in discriminators, registered through the same hook a third-party plugin uses."""
from vqstack.core.hookspecs import hookimpl

from .patchgan import PatchDiscriminator
from .stylegan import StyleGANDiscriminator

__all__ = ["PatchDiscriminator", "StyleGANDiscriminator"]


@hookimpl
def vqstack_register_discriminators(registry):
    registry.register("patchgan", PatchDiscriminator)
    registry.register("stylegan", StyleGANDiscriminator)
