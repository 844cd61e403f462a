"""Named component registries, one per kind, filled by plugins."""
from __future__ import annotations

import difflib
import inspect
from typing import Any, Callable

from ..lazy import is_reference, load_reference

# Component kinds, each with the hook that fills its registry.
KIND_HOOKS = {
    "encoder": "vqstack_register_encoders",
    "decoder": "vqstack_register_decoders",
    "quantizer": "vqstack_register_quantizers",
    "discriminator": "vqstack_register_discriminators",
    "perceptual": "vqstack_register_perceptual_losses",
    "prior": "vqstack_register_priors",
    "features": "vqstack_register_features",
    "restorer": "vqstack_register_restorers",
    "condition": "vqstack_register_conditions",
}

SPEC_ATTR = "_vqstack_spec"


class UnknownComponentError(KeyError):
    """Raised for a kind or name that nothing registered."""

    def __str__(self):  # KeyError would print the message with quotes around it
        return str(self.args[0])


class DuplicateComponentError(ValueError):
    """Raised when two registrations claim the same name within one kind."""


class ComponentImportError(ImportError):
    """Raised when a component registered as ``"package.module:Attribute"`` cannot be imported or is not callable."""


def suggest(name: str, choices) -> str:
    """A ' Did you mean ...?' sentence for the closest choice, or ''."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" Did you mean {close[0]!r}?" if close else ""


def plural(kind: str) -> str:
    return kind if kind.endswith("s") else f"{kind}s"  # "features" is already plural


def check_kind(kind: str) -> str:
    if kind not in KIND_HOOKS:
        raise UnknownComponentError(
            f"Unknown component kind {kind!r}. Kinds: {', '.join(KIND_HOOKS)}.{suggest(kind, KIND_HOOKS)}"
        )
    return kind


class Registry:
    """Names -> factories (classes or functions returning an ``nn.Module``) for one component kind.

    A factory may also be registered as a reference string, ``"package.module:Attribute"``: listing the names
    (``names``, ``owner``, ``in``, ``len``; what ``vqstack plugins`` shows) never imports it, and the first
    ``get`` / ``build`` imports it and keeps the object. This keeps listing plugins free of torch and transformers;
    a class registered directly works the same, it just costs its imports when the plugin is loaded.
    """

    def __init__(self, kind: str):
        self.kind = check_kind(kind)
        self._factories: dict[str, Callable[..., Any] | str] = {}  # a str: a reference not imported yet
        self._owners: dict[str, str] = {}
        self._current_owner = "<direct>"

    def register(self, name: str, factory: Callable[..., Any] | str) -> Callable[..., Any] | str:
        """Add ``factory`` (callable, or ``"package.module:Attribute"`` naming one) under ``name``; a name may be
        registered once per kind."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"A {self.kind} name must be a non-empty string, got {name!r}.")
        if isinstance(factory, str) and not is_reference(factory):
            raise TypeError(f"The factory for {self.kind} {name!r} is the string {factory!r}, which is not a "
                            f"reference of the form 'package.module:Attribute' (e.g. "
                            f"'vqstack.quantizers.vq:VectorQuantizer').")
        if not isinstance(factory, str) and not callable(factory):
            raise TypeError(f"The factory for {self.kind} {name!r} must be callable (a class or a function) or a "
                            f"'package.module:Attribute' string naming one, got {factory!r}.")
        if name in self._factories:
            raise DuplicateComponentError(
                f"{self.kind} {name!r} is registered twice: by plugin {self._owners[name]!r} and by plugin "
                f"{self._current_owner!r}. Rename one of them, or block one plugin with VQSTACK_DISABLE_PLUGINS."
            )
        self._factories[name] = factory
        self._owners[name] = self._current_owner
        return factory

    def names(self) -> list[str]:
        return sorted(self._factories)

    def owner(self, name: str) -> str:
        """The plugin that registered ``name`` (its factory is not imported)."""
        self._check_known(name)
        return self._owners[name]

    def get(self, name: str) -> Callable[..., Any]:
        """The factory of ``name``; a reference string is imported on the first call and kept."""
        self._check_known(name)
        factory = self._factories[name]
        if isinstance(factory, str):
            factory = self._factories[name] = self._load(name, factory)
        return factory

    def _check_known(self, name: str) -> None:
        if name not in self._factories:
            known = ", ".join(self.names()) or "none"
            raise UnknownComponentError(f"Unknown {self.kind} {name!r}. Registered {plural(self.kind)}: {known}."
                                        f"{suggest(name, self._factories)}")

    def _load(self, name: str, reference: str) -> Callable[..., Any]:
        try:
            factory = load_reference(reference)
            if not callable(factory):
                raise TypeError(f"{factory!r} is not callable")
        except Exception as err:  # a missing dependency, a typo in the reference: one error naming who and where
            raise ComponentImportError(
                f"Cannot load {self.kind} {name!r} (registered by plugin {self._owners[name]!r} as {reference!r}): "
                f"{type(err).__name__}: {err}. Fix the reference or install what it needs, or block the plugin "
                f"with VQSTACK_DISABLE_PLUGINS."
            ) from err
        return factory

    def build(self, name: str, **kwargs):
        """Build ``name`` with ``kwargs``; the result remembers both, so it can be saved and rebuilt by name."""
        factory = self.get(name)
        try:
            component = factory(**kwargs)
        except TypeError as err:
            raise TypeError(f"Cannot build {self.kind} {name!r} with {sorted(kwargs)}: {err}. "
                            f"It accepts: {accepted_arguments(factory)}.") from err
        remember_spec(component, self.kind, name, kwargs)
        return component

    def __contains__(self, name: str) -> bool:
        return name in self._factories

    def __iter__(self):
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._factories)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


def accepted_arguments(factory) -> str:
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return "(unknown signature)"
    return ", ".join(p for p in params if p not in ("self", "args", "kwargs")) or "no arguments"


def remember_spec(component, kind: str, name: str, kwargs: dict) -> None:
    try:
        setattr(component, SPEC_ATTR, {"kind": kind, "name": name, "kwargs": dict(kwargs)})
    except AttributeError:  # objects with __slots__ cannot remember; saving them by name is then refused
        pass


def component_spec(component) -> dict | None:
    """``{"kind", "name", "kwargs"}`` for a component made by :func:`vqstack.build`, else ``None``."""
    return getattr(component, SPEC_ATTR, None)
