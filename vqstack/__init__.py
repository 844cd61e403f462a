"""vqstack: two-stage image generation with swappable, plugin-provided components.

    import vqstack
    vqstack.components("quantizer")                       # registered names
    q = vqstack.build("quantizer", "vq", dim=64, codebook_size=1024)
    tok = vqstack.Tokenizer.from_config({"encoder": "conv", "quantizer": "fsq", "decoder": "conv"})

Names are imported on first use (``vqstack.Tokenizer`` imports torch, ``vqstack.Pipeline`` transformers), so
``import vqstack`` and ``vqstack --help`` stay fast. Submodules (``vqstack.core``, ``vqstack.priors``, ...) load the
same way on attribute access.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .lazy import lazy_exports
from .version import __version__

# public name -> the vqstack module that defines it
_EXPORTS = {
    "build": "core", "components": "core", "registry": "core", "hookimpl": "core", "register_plugin": "core",
    "unregister_plugin": "core", "plugins_info": "core", "component_spec": "core",
    "UnknownComponentError": "core", "DuplicateComponentError": "core", "PluginLoadError": "core",
    "PluginWarning": "core", "DISABLE_ENV": "core",
    "save_component": "core.serialization", "load_component": "core.serialization",
    "Tokenizer": "tokenizer", "TokenizerOutput": "tokenizer",
    "Pipeline": "pipelines", "RestorePipeline": "pipelines", "TranslatePipeline": "pipelines",
    "Restorer": "restorers.base", "RestorerOutput": "restorers.base",
    "Condition": "conditions.base",
    "Quantizer": "quantizers.base", "QuantizerOutput": "quantizers.base",
}

__all__ = [
    "__version__", "build", "components", "registry", "hookimpl", "register_plugin", "unregister_plugin",
    "plugins_info", "component_spec", "save_component", "load_component", "Tokenizer", "TokenizerOutput",
    "Pipeline", "RestorePipeline", "TranslatePipeline", "Restorer", "RestorerOutput", "Condition", "Quantizer",
    "QuantizerOutput",
    "UnknownComponentError", "DuplicateComponentError", "PluginLoadError", "PluginWarning", "DISABLE_ENV",
]


# a name in _EXPORTS imports its module on first use; any other public name is tried as a submodule (vqstack.core,
# vqstack.priors, ...), which `import vqstack` used to import them all
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


if TYPE_CHECKING:  # what static tools and IDEs see; never runs
    from .conditions.base import Condition
    from .core import (DISABLE_ENV, DuplicateComponentError, PluginLoadError, PluginWarning, UnknownComponentError,
                       build, component_spec, components, hookimpl, plugins_info, register_plugin, registry,
                       unregister_plugin)
    from .core.serialization import load_component, save_component
    from .pipelines import Pipeline, RestorePipeline, TranslatePipeline
    from .quantizers.base import Quantizer, QuantizerOutput
    from .restorers.base import Restorer, RestorerOutput
    from .tokenizer import Tokenizer, TokenizerOutput
