"""The plugin manager: built-ins first, then installed entry points, each loaded once and lazily.

Set ``VQSTACK_DISABLE_PLUGINS`` to a comma-separated list of plugin names to block them (``*`` blocks every
installed plugin; built-ins can be blocked by their module name, e.g. ``vqstack.quantizers``).
"""
from __future__ import annotations

import importlib
import importlib.metadata
import os

import pluggy

from . import hookspecs
from .registry import KIND_HOOKS, DuplicateComponentError, Registry, check_kind

ENTRY_POINT_GROUP = "vqstack"
DISABLE_ENV = "VQSTACK_DISABLE_PLUGINS"

# Built-in components live in these modules, each a plugin with ``@hookimpl`` functions like any other.
BUILTIN_PLUGINS = (
    "vqstack.autoencoders",
    "vqstack.quantizers",
    "vqstack.discriminators",
    "vqstack.perceptual",
    "vqstack.priors",
    "vqstack.evaluation.features",
)


class PluginLoadError(RuntimeError):
    """An installed plugin failed to import or to register its components."""


_manager: pluggy.PluginManager | None = None
_registries: dict[str, Registry] | None = None
_distributions: dict[str, tuple[str, str]] = {}


def disabled_plugins() -> set[str]:
    return {name.strip() for name in os.environ.get(DISABLE_ENV, "").split(",") if name.strip()}


def plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, created (and entry points imported) on first use."""
    global _manager
    if _manager is None:
        manager = pluggy.PluginManager(hookspecs.PROJECT)
        manager.add_hookspecs(hookspecs)
        blocked = disabled_plugins()
        for name in blocked - {"*"}:
            manager.set_blocked(name)
        for module_name in BUILTIN_PLUGINS:
            if not manager.is_blocked(module_name):
                manager.register(importlib.import_module(module_name), name=module_name)
        if "*" not in blocked:
            _load_entry_points(manager)
        manager.check_pending()
        _manager = manager
    return _manager


def _load_entry_points(manager: pluggy.PluginManager) -> None:
    for dist in importlib.metadata.distributions():
        for entry_point in dist.entry_points:
            if entry_point.group != ENTRY_POINT_GROUP:
                continue
            name = entry_point.name
            # the same distribution can be found twice on sys.path (editable installs); load it once
            if manager.get_plugin(name) is not None or manager.is_blocked(name):
                continue
            try:
                plugin = entry_point.load()
            except Exception as err:
                raise PluginLoadError(
                    f"Plugin {name!r} from {dist.metadata['Name']} {dist.version} failed to import "
                    f"({entry_point.value}): {err}. Fix or uninstall it, or block it with {DISABLE_ENV}={name}."
                ) from err
            manager.register(plugin, name=name)
            _distributions[name] = (dist.metadata["Name"], dist.version)


def hook():
    """The hook relay, for calling the training hooks: ``hook().vqstack_on_step_end(step=..., logs=...)``."""
    return plugin_manager().hook


def registry(kind: str) -> Registry:
    """The registry of one component kind, filled by every plugin's registration hook."""
    check_kind(kind)
    global _registries
    if _registries is None:
        _registries = _fill_registries(plugin_manager())
    return _registries[kind]


def _fill_registries(manager: pluggy.PluginManager) -> dict[str, Registry]:
    registries = {}
    for kind, hook_name in KIND_HOOKS.items():
        reg = Registry(kind)
        # Call each implementation ourselves (in registration order) to know which plugin registered what.
        for impl in getattr(manager.hook, hook_name).get_hookimpls():
            if impl.hookwrapper or getattr(impl, "wrapper", False):
                continue
            reg._current_owner = impl.plugin_name
            try:
                impl.function(**{arg: reg for arg in impl.argnames})
            except DuplicateComponentError:
                raise  # already names both plugins
            except Exception as err:
                if impl.plugin_name in BUILTIN_PLUGINS:
                    raise
                raise PluginLoadError(
                    f"Plugin {impl.plugin_name!r} failed in {hook_name}: {err}. "
                    f"Block it with {DISABLE_ENV}={impl.plugin_name}."
                ) from err
        reg._current_owner = "<direct>"
        registries[kind] = reg
    return registries


def register_plugin(plugin, name: str | None = None) -> str:
    """Register a plugin object or module at run time (tests, notebooks); registries refill on next use."""
    global _registries
    registered = plugin_manager().register(plugin, name=name)
    if registered is None:
        raise PluginLoadError(f"Plugin {name!r} is blocked (see {DISABLE_ENV}).")
    plugin_manager().check_pending()
    _registries = None
    return registered


def unregister_plugin(name: str) -> None:
    global _registries
    plugin_manager().unregister(name=name)
    _registries = None


def reset() -> None:
    """Forget every plugin and registry; the next use loads them again (re-reading the environment)."""
    global _manager, _registries
    _manager, _registries = None, None
    _distributions.clear()


def plugins_info() -> list[dict]:
    """One entry per plugin: name, distribution, version and the components it registered, by kind."""
    manager = plugin_manager()
    for kind in KIND_HOOKS:
        registry(kind)
    info = []
    for name, plugin in manager.list_name_plugin():
        if plugin is None:  # blocked
            continue
        if name in BUILTIN_PLUGINS:
            dist, version = "vqstack", importlib.metadata.version("vqstack")
        else:
            dist, version = _distributions.get(name, ("(registered at run time)", ""))
        components = {
            kind: [n for n in _registries[kind].names() if _registries[kind].owner(n) == name] for kind in KIND_HOOKS
        }
        info.append({"name": name, "distribution": dist, "version": version,
                     "components": {k: v for k, v in components.items() if v}})
    return info
