"""Build a registered prior the way a training recipe does, whatever sizes its constructor has.

    prior = build_prior("maskgit", vocab_size=1024, seq_len=256, attributes={...}, cond_dropout=0.1,
                        dim=512, depth=8, heads=8)

A recipe knows the contract's arguments (``vocab_size``, ``seq_len`` and the conditions) and its preset's sizes
(``dim``, ``depth``, ``heads``: ``ar``'s own), which another prior may not take. So the contract's arguments are
always passed and the rest only when the constructor takes them (``**kwargs`` takes all); a required argument the
recipe cannot give, or a condition the prior cannot take, is one ``ValueError`` naming it.
"""
from __future__ import annotations

import inspect

# The arguments of the prior contract (docs/plugins.md, Prior.init_conditions, Prior.init_image_condition). A prior
# must take each one a run sets; a condition left at "none" (0, None, {}) may be dropped, since leaving it out means
# the same. (An image condition's patch_size, grid and image_dropout go, like the sizes, where they are taken.)
CONTRACT_ARGUMENTS = ("vocab_size", "seq_len", "num_classes", "class_names", "attributes", "image_condition")


def constructor_parameters(factory) -> tuple[dict[str, inspect.Parameter], bool] | None:
    """(keyword parameters of ``factory`` by name, whether it takes ``**kwargs``); None when it has no signature."""
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return None
    named = {name: p for name, p in parameters.items()
             if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)}
    return named, any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def prior_arguments(name: str, **kwargs) -> dict:
    """The keyword arguments of ``kwargs`` that prior ``name``'s constructor takes: every contract argument the run
    sets (a ``ValueError`` if it takes none such), the others (preset sizes, dropouts) only when it takes them.
    Raises ``ValueError`` naming any argument it requires that ``kwargs`` lacks."""
    from ..core.plugins import registry

    found = constructor_parameters(registry("prior").get(name))
    if found is None:  # a builtin or C factory: nothing to read, pass everything
        return dict(kwargs)
    parameters, takes_any = found
    if takes_any:
        return dict(kwargs)
    accepted = ", ".join(parameters) or "no arguments"
    refused = [key for key in CONTRACT_ARGUMENTS if kwargs.get(key) and key not in parameters]
    if refused:
        raise ValueError(f"prior {name!r} does not take {', '.join(refused)}, which this run sets "
                         f"({', '.join(f'{k}={kwargs[k]!r}' for k in refused)}); it takes: {accepted}.")
    chosen = {key: value for key, value in kwargs.items() if key in parameters}
    missing = [key for key, p in parameters.items() if p.default is inspect.Parameter.empty and key not in chosen]
    if missing:
        raise ValueError(f"prior {name!r} requires {', '.join(missing)}, which the recipe does not give (it gives "
                         f"{', '.join(kwargs)}): give {'it a default' if len(missing) == 1 else 'them defaults'} "
                         f"in the prior's constructor.")
    return chosen


def build_prior(name: str, **kwargs):
    """Build registered prior ``name`` from a recipe's arguments, passing only those its constructor takes (see
    :func:`prior_arguments`); the prior remembers what it was built with (``component_spec``), for saving."""
    from ..core.plugins import registry

    return registry("prior").build(name, **prior_arguments(name, **kwargs))
