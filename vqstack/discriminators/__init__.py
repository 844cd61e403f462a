"""Built-in discriminators, registered through the same hook a third-party plugin uses."""
from typing import TYPE_CHECKING

from vqstack.core.hookspecs import hookimpl
from vqstack.lazy import lazy_exports

__all__ = ["PatchDiscriminator", "StyleGANDiscriminator"]

# Imported on first use: loading the plugins (``vqstack plugins``) imports no torch. See vqstack.lazy.
__getattr__, __dir__ = lazy_exports(__name__, {"PatchDiscriminator": "patchgan",
                                               "StyleGANDiscriminator": "stylegan"})


@hookimpl
def vqstack_register_discriminators(registry):
    registry.register("patchgan", "vqstack.discriminators.patchgan:PatchDiscriminator")
    registry.register("stylegan", "vqstack.discriminators.stylegan:StyleGANDiscriminator")


if TYPE_CHECKING:  # what static tools and IDEs see; never runs
    from .patchgan import PatchDiscriminator
    from .stylegan import StyleGANDiscriminator
