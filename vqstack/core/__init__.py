"""The core: hook specifications, component registries and the plugin manager."""
from .hookspecs import hookimpl, hookspec
from .plugins import (DISABLE_ENV, ENTRY_POINT_GROUP, PluginLoadError, PluginWarning, hook, plugin_manager,
                      plugins_info, register_plugin, registry, reset, unregister_plugin)
from ..lazy import lazy_exports, load_reference
from .registry import (KIND_HOOKS, ComponentImportError, DuplicateComponentError, Registry, UnknownComponentError,
                       component_spec)


def components(kind: str) -> list[str]:
    """Sorted names registered for ``kind`` (encoder, decoder, quantizer, discriminator, perceptual, prior,
    features, restorer, condition: ``KIND_HOOKS`` lists them)."""
    return registry(kind).names()


def build(kind: str, name: str, **kwargs):
    """Build the component ``name`` of ``kind`` with ``kwargs``."""
    return registry(kind).build(name, **kwargs)
