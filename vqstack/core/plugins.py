"""The plugin manager: built-ins first, then installed entry points, each loaded once and lazily.

Set ``VQSTACK_DISABLE_PLUGINS`` to a comma-separated list of plugin names to block them (``*`` blocks every
installed plugin; built-ins can be blocked by their module name, e.g. ``vqstack.quantizers``).

An installed plugin that fails to import, to validate or in a registration hook is skipped with a
:class:`PluginWarning` naming it and its error, and listed by :func:`plugins_info`; everything else keeps working.
Two plugins registering one name still fail loudly (:class:`~vqstack.DuplicateComponentError`): which one was meant
cannot be guessed.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import os
import warnings

import pluggy

from . import hookspecs
from .registry import KIND_HOOKS, DuplicateComponentError, Registry, check_kind

ENTRY_POINT_GROUP = "vqstack"
DISABLE_ENV = "VQSTACK_DISABLE_PLUGINS"

# Built-in components live in these modules, each a plugin with ``@hookimpl`` functions like any other. Each
# registers ``"module:Class"`` references and imports no torch itself, so listing plugins stays fast.
BUILTIN_PLUGINS = (
    "vqstack.autoencoders",
    "vqstack.quantizers",
    "vqstack.discriminators",
    "vqstack.perceptual",
    "vqstack.priors",
    "vqstack.evaluation",  # the ``features`` built-ins
    "vqstack.restorers",
    "vqstack.conditions",
)


class PluginLoadError(RuntimeError):
    """A plugin could not be registered (e.g. it is blocked)."""


class PluginWarning(UserWarning):
    """An installed plugin failed and was skipped; filter this category to silence it."""


_manager: pluggy.PluginManager | None = None
_registries: dict[str, Registry] | None = None
_distributions: dict[str, tuple[str, str]] = {}
_failures: dict[str, dict] = {}  # plugin name -> {"stage", "error"} of plugins skipped because they failed


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
            if manager.get_plugin(name) is not None or manager.is_blocked(name) or name in _failures:
                continue
            _distributions[name] = (dist.metadata["Name"], dist.version)
            try:
                plugin = entry_point.load()
            except Exception as err:  # its own bug or a missing dependency: vqstack and other plugins still work
                _skip(name, f"import ({entry_point.value})", err)
                continue
            _register_checked(manager, plugin, name)


def _register_checked(manager: pluggy.PluginManager, plugin, name: str) -> None:
    """Register an installed plugin, or skip it when pluggy refuses it (e.g. a misspelt ``vqstack_*`` hook)."""
    try:
        manager.register(plugin, name=name)
        manager.check_pending()  # the plugins before it passed, so a failure here is this one's
    except (pluggy.PluginValidationError, ValueError) as err:
        if manager.get_plugin(name) is not None:
            manager.unregister(name=name)
        _skip(name, "validation", err)


def _skip(name: str, stage: str, err: BaseException) -> None:
    """Record a failed plugin and say so once, with the way to silence it for good."""
    error = f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0]}".rstrip(": ")
    _failures[name] = {"stage": stage, "error": error}
    dist, version = _distributions.get(name, (None, ""))
    origin = f"({dist} {version})".replace(" )", ")") if dist else "(registered at run time)"
    warnings.warn(f"vqstack skips plugin {name!r} {origin}: it failed in {stage} with "
                  f"{error}. Fix or uninstall it, or block it with {DISABLE_ENV}={name}.", PluginWarning, stacklevel=2)


def failed_plugins() -> dict[str, dict]:
    """Plugins skipped because they failed: name -> {"stage", "error"}."""
    for kind in KIND_HOOKS:
        registry(kind)
    return dict(_failures)


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
    """Every kind's registry; a plugin whose registration hook raises is unregistered (with a warning) and the
    registries are filled again without it, so a failed plugin contributes nothing, not half its components."""
    while True:
        try:
            return {kind: _fill_registry(manager, kind, hook_name) for kind, hook_name in KIND_HOOKS.items()}
        except _HookFailed as failed:
            manager.unregister(name=failed.plugin)
            _skip(failed.plugin, failed.hook, failed.__cause__)


class _HookFailed(Exception):
    """A non-built-in plugin's registration hook raised (internal: the plugin is then skipped)."""

    def __init__(self, plugin: str, hook: str):
        super().__init__(plugin, hook)
        self.plugin, self.hook = plugin, hook


def _fill_registry(manager: pluggy.PluginManager, kind: str, hook_name: str) -> Registry:
    reg = Registry(kind)
    # Call each implementation ourselves (in registration order) to know which plugin registered what.
    for impl in getattr(manager.hook, hook_name).get_hookimpls():
        if impl.hookwrapper or getattr(impl, "wrapper", False):
            continue
        reg._current_owner = impl.plugin_name
        try:
            impl.function(**{arg: reg for arg in impl.argnames})
        except DuplicateComponentError:
            raise  # already names both plugins; which one is meant cannot be guessed
        except Exception as err:
            if impl.plugin_name in BUILTIN_PLUGINS:
                raise  # vqstack's own bug: never hide it
            raise _HookFailed(impl.plugin_name, hook_name) from err
    reg._current_owner = "<direct>"
    return reg


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
    """Remove a plugin registered at run time (or forget one already skipped because it failed)."""
    global _registries
    if _failures.pop(name, None) is None or plugin_manager().get_plugin(name) is not None:
        plugin_manager().unregister(name=name)
    _registries = None


def reset() -> None:
    """Forget every plugin and registry; the next use loads them again (re-reading the environment)."""
    global _manager, _registries
    _manager, _registries = None, None
    _distributions.clear()
    _failures.clear()


def plugins_info() -> list[dict]:
    """One entry per plugin: name, distribution, version, the components it registered by kind, and ``error``
    (None, or why a plugin that failed was skipped; it then registers nothing)."""
    manager = plugin_manager()
    failed = failed_plugins()
    info = []
    for name, plugin in manager.list_name_plugin():
        if plugin is None:  # blocked
            continue
        components = {
            kind: [n for n in _registries[kind].names() if _registries[kind].owner(n) == name] for kind in KIND_HOOKS
        }
        info.append({**_origin(name), "components": {k: v for k, v in components.items() if v}, "error": None})
    for name, failure in failed.items():
        info.append({**_origin(name), "components": {}, "error": f"failed in {failure['stage']}: {failure['error']}"})
    return info


def _origin(name: str) -> dict:
    """name, distribution and version of a plugin."""
    if name in BUILTIN_PLUGINS:
        dist, version = "vqstack", importlib.metadata.version("vqstack")
    else:
        dist, version = _distributions.get(name, ("(registered at run time)", ""))
    return {"name": name, "distribution": dist, "version": version}
