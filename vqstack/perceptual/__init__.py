"""Built-in perceptual losses, registered through the same hook a third-party plugin uses.

``lpips``: LPIPS (VGG by default) from the ``lpips`` package; its ImageNet backbone comes from the torch hub cache
or ``backbone_weights=`` and is never downloaded. ``stlpips``: shift-tolerant LPIPS, whose wheel ships its weights.
Both map two image batches in [-1, 1] to a per-sample distance (B,) and are frozen.
"""
from vqstack.core.hookspecs import hookimpl

from .lpips import LPIPS, FrozenPerceptualLoss
from .stlpips import STLPIPS

__all__ = ["LPIPS", "STLPIPS", "FrozenPerceptualLoss"]


@hookimpl
def vqstack_register_perceptual_losses(registry):
    registry.register("lpips", LPIPS)
    registry.register("stlpips", STLPIPS)
