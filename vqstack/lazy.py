"""Names imported on first use: lazy package exports and ``"package.module:Attribute"`` references.

Listing plugins (``vqstack plugins``) and ``import vqstack`` must not import torch or transformers, which take
seconds; so a package names what it exports and where it lives, and the module behind a name is imported when the
name is first used:

    # mypackage/__init__.py
    from vqstack.api import lazy_exports

    __all__ = ["MyQuantizer", "SCHEDULES"]
    __getattr__, __dir__ = lazy_exports(__name__, {"MyQuantizer": "my_quantizer", "SCHEDULES": "schedule"})

``from mypackage import MyQuantizer``, ``mypackage.MyQuantizer`` and ``from mypackage import *`` then work as if
``__init__.py`` had imported it. Registries take the same idea as a string, ``"mypackage.my_quantizer:MyQuantizer"``
(:func:`load_reference` imports it).
"""
from __future__ import annotations

import importlib
import sys
from typing import Any, Callable, Mapping


def lazy_exports(module: str, exports: Mapping[str, str | Callable[[], Any]], *, submodules: bool = True):
    """A module-level ``(__getattr__, __dir__)`` pair for the module named ``module`` (pass ``__name__``).

    ``exports`` maps each public name to the module that defines it, named as in ``from .x import name``: relative
    to the package (``"vq"`` in ``vqstack/quantizers/__init__.py``; ``"quantizers.base"`` in ``vqstack/api.py``),
    or to a function without arguments that computes it (a dict of built-ins, say). The value is stored in the module
    on first access, so later lookups are plain attribute reads. With ``submodules``, a package tries any other
    public name as a submodule (``package.ar`` imports ``package/ar.py``), as an eager ``__init__.py`` would have.
    """
    exports = dict(exports)
    for name, where in exports.items():  # a typo here would otherwise surface only when the name is first used
        if not (callable(where) or (isinstance(where, str) and all(p.isidentifier() for p in where.split(".")))):
            raise TypeError(f"lazy_exports({module!r}): {name!r} must map to a module name such as 'vq' or to a "
                            f"function computing the value, got {where!r}.")
    this = sys.modules[module]
    package = this.__package__ or module  # what `from .x import y` in that module is relative to
    submodules = submodules and hasattr(this, "__path__")  # only a package has submodules

    def __getattr__(name: str):
        where = exports.get(name)
        if where is not None:
            value = where() if callable(where) else getattr(importlib.import_module(f".{where}", package), name)
            setattr(this, name, value)  # later lookups skip this function
            return value
        if submodules and name.isidentifier() and not name.startswith("_"):
            try:
                return importlib.import_module(f".{name}", module)
            except ModuleNotFoundError as err:
                if err.name != f"{module}.{name}":
                    raise  # the submodule exists but needs something missing: say so
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    def __dir__():
        return sorted({*vars(this), *exports})

    return __getattr__, __dir__


def is_reference(value: Any) -> bool:
    """Whether ``value`` is a ``"package.module:Attribute"`` string (the attribute may be dotted: ``A.b``)."""
    if not isinstance(value, str) or value.count(":") != 1:
        return False
    module, attribute = value.split(":")
    return all(part.isidentifier() for part in [*module.split("."), *attribute.split(".")])


def load_reference(reference: str) -> Any:
    """The object ``"package.module:Attribute"`` names, its module imported (ImportError / AttributeError else)."""
    if not is_reference(reference):
        raise ValueError(f"{reference!r} is not a reference of the form 'package.module:Attribute'.")
    module, attribute = reference.split(":")
    value = importlib.import_module(module)
    for part in attribute.split("."):
        value = getattr(value, part)
    return value
