"""Built-in conditions (image -> condition image that an image-to-image prior reads before the image tokens),
registered through the same pluggy hook a third-party plugin uses.

    lineart     LineArt     black lines on white (XDoG and Sobel detectors, a random style per image), 1 channel
    grayscale   Grayscale   ITU-R BT.601 luma, 1 channel
    lowres      LowRes      shrunk by 2, 4 or 8 and resized back, 3 channels

:func:`drawing_to_condition` turns a user's own drawing into the ``lineart`` condition.
"""
from typing import TYPE_CHECKING

from vqstack.core.hookspecs import hookimpl
from vqstack.lazy import lazy_exports, load_reference

# Registered by reference, so loading the plugins (``vqstack plugins``) imports no torch; see vqstack.lazy.
REFERENCES = {
    "lineart": "vqstack.conditions.lineart:LineArt",
    "grayscale": "vqstack.conditions.grayscale:Grayscale",
    "lowres": "vqstack.conditions.lowres:LowRes",
}

__all__ = ["Condition", "LineArt", "Grayscale", "LowRes", "BUILTIN_CONDITIONS", "build_condition",
           "check_same_condition", "drawing_to_condition", "crop_back"]

__getattr__, __dir__ = lazy_exports(__name__, {
    "Condition": "base", "build_condition": "base", "check_same_condition": "base",
    "crop_back": "drawings", "drawing_to_condition": "drawings",
    "Grayscale": "grayscale", "LineArt": "lineart", "LowRes": "lowres",
    "BUILTIN_CONDITIONS": lambda: {name: load_reference(ref) for name, ref in REFERENCES.items()},  # name -> class
})


@hookimpl
def vqstack_register_conditions(registry):
    for name, reference in REFERENCES.items():
        registry.register(name, reference)


if TYPE_CHECKING:  # what static tools and IDEs see; never runs
    from .base import Condition, build_condition, check_same_condition
    from .drawings import crop_back, drawing_to_condition
    from .grayscale import Grayscale
    from .lineart import LineArt
    from .lowres import LowRes

    BUILTIN_CONDITIONS: dict[str, type[Condition]]
