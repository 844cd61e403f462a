"""Built-in conditions (image -> condition image that an image-to-image prior reads before the image tokens),
registered through the same pluggy hook a third-party plugin uses.

    lineart     LineArt     black lines on white (XDoG and Sobel detectors, a random style per image), 1 channel
    grayscale   Grayscale   ITU-R BT.601 luma, 1 channel
    lowres      LowRes      shrunk by 2, 4 or 8 and resized back, 3 channels

:func:`drawing_to_condition` turns a user's own drawing into the ``lineart`` condition.
"""
from vqstack.core.hookspecs import hookimpl

from .base import Condition, build_condition, check_same_condition
from .drawings import crop_back, drawing_to_condition
from .grayscale import Grayscale
from .lineart import LineArt
from .lowres import LowRes

BUILTIN_CONDITIONS = {"lineart": LineArt, "grayscale": Grayscale, "lowres": LowRes}

__all__ = ["Condition", "LineArt", "Grayscale", "LowRes", "BUILTIN_CONDITIONS", "build_condition",
           "check_same_condition", "drawing_to_condition", "crop_back"]


@hookimpl
def vqstack_register_conditions(registry):
    for name, factory in BUILTIN_CONDITIONS.items():
        registry.register(name, factory)
