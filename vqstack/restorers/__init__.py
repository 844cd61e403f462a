"""Built-in restorers (degraded image -> the clean image's codes), registered through the same pluggy hook a
third-party plugin uses.

    codeformer   CodeFormerRestorer   the tokenizer's encoder plus a transformer predicting codes (CodeFormer)
"""
from typing import TYPE_CHECKING

from vqstack.core.hookspecs import hookimpl
from vqstack.lazy import lazy_exports, load_reference

# Registered by reference, so loading the plugins (``vqstack plugins``) imports no torch; see vqstack.lazy.
REFERENCES = {"codeformer": "vqstack.restorers.codeformer:CodeFormerRestorer"}

__all__ = ["Restorer", "RestorerOutput", "CodeFormerRestorer", "BUILTIN_RESTORERS", "blend_codes",
           "tokenizer_sizes"]

__getattr__, __dir__ = lazy_exports(__name__, {
    "Restorer": "base", "RestorerOutput": "base", "blend_codes": "base", "tokenizer_sizes": "base",
    "CodeFormerRestorer": "codeformer",
    "BUILTIN_RESTORERS": lambda: {name: load_reference(ref) for name, ref in REFERENCES.items()},  # name -> class
})


@hookimpl
def vqstack_register_restorers(registry):
    for name, reference in REFERENCES.items():
        registry.register(name, reference)


if TYPE_CHECKING:  # what static tools and IDEs see; never runs
    from .base import Restorer, RestorerOutput, blend_codes, tokenizer_sizes
    from .codeformer import CodeFormerRestorer

    BUILTIN_RESTORERS: dict[str, type[Restorer]]
