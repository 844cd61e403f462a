"""Built-in perceptual losses, registered through the same hook a third-party plugin uses.

``lpips``: LPIPS (VGG by default) from the ``lpips`` package; its ImageNet backbone comes from the torch hub cache
or ``backbone_weights=`` and is never downloaded. ``stlpips``: shift-tolerant LPIPS, whose wheel ships its weights.
Both map two image batches in [-1, 1] to a per-sample distance (B,) and are frozen.
"""
from typing import TYPE_CHECKING

from vqstack.core.hookspecs import hookimpl
from vqstack.lazy import lazy_exports

__all__ = ["LPIPS", "STLPIPS", "FrozenPerceptualLoss"]

# Imported on first use: loading the plugins (``vqstack plugins``) imports no torch. See vqstack.lazy.
__getattr__, __dir__ = lazy_exports(__name__, {"LPIPS": "lpips", "FrozenPerceptualLoss": "lpips",
                                               "STLPIPS": "stlpips"})


@hookimpl
def vqstack_register_perceptual_losses(registry):
    registry.register("lpips", "vqstack.perceptual.lpips:LPIPS")
    registry.register("stlpips", "vqstack.perceptual.stlpips:STLPIPS")


if TYPE_CHECKING:  # what static tools and IDEs see; never runs
    from .lpips import LPIPS, FrozenPerceptualLoss
    from .stlpips import STLPIPS
