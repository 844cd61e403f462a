"""Built-in restorers (degraded image -> the clean image's codes), registered through the same pluggy hook a
third-party plugin uses.

    codeformer   CodeFormerRestorer   the tokenizer's encoder plus a transformer predicting codes (CodeFormer)
"""
from vqstack.core.hookspecs import hookimpl

from .base import Restorer, RestorerOutput, blend_codes, tokenizer_sizes
from .codeformer import CodeFormerRestorer

BUILTIN_RESTORERS = {"codeformer": CodeFormerRestorer}

__all__ = ["Restorer", "RestorerOutput", "CodeFormerRestorer", "BUILTIN_RESTORERS", "blend_codes",
           "tokenizer_sizes"]


@hookimpl
def vqstack_register_restorers(registry):
    for name, factory in BUILTIN_RESTORERS.items():
        registry.register(name, factory)
