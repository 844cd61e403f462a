"""vqstack: two-stage image generation with swappable, plugin-provided components.

    import vqstack
    vqstack.components("quantizer")                       # registered names
    q = vqstack.build("quantizer", "vq", dim=64, codebook_size=1024)
    tok = vqstack.Tokenizer.from_config({"encoder": "conv", "quantizer": "fsq", "decoder": "conv"})
"""

from .core import (DISABLE_ENV, DuplicateComponentError, PluginLoadError, PluginWarning, UnknownComponentError,
                   build,
                   component_spec, components, hookimpl, plugins_info, register_plugin, registry,
                   unregister_plugin)
from .conditions.base import Condition
from .core.serialization import load_component, save_component
from .pipelines import Pipeline, RestorePipeline, TranslatePipeline
from .quantizers.base import Quantizer, QuantizerOutput
from .restorers.base import Restorer, RestorerOutput
from .tokenizer import Tokenizer, TokenizerOutput
from .version import __version__

__all__ = [
    "__version__", "build", "components", "registry", "hookimpl", "register_plugin", "unregister_plugin",
    "plugins_info", "component_spec", "save_component", "load_component", "Tokenizer", "TokenizerOutput",
    "Pipeline", "RestorePipeline", "TranslatePipeline", "Restorer", "RestorerOutput", "Condition", "Quantizer",
    "QuantizerOutput",
    "UnknownComponentError", "DuplicateComponentError", "PluginLoadError", "PluginWarning", "DISABLE_ENV",
]
