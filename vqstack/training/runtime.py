"""How a recipe runs: which device its processes use, and how a user's mistake ends it."""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import torch


def has_accelerator() -> bool:
    accelerator = getattr(torch, "accelerator", None)  # torch >= 2.6 knows every accelerator kind
    return accelerator.is_available() if accelerator is not None else torch.cuda.is_available()


def cpu_processes() -> bool:
    """True for a multi-process launch on a machine without an accelerator.

    ``accelerate launch --multi_gpu --num_processes N`` then starts N processes that accelerate would run as N
    unrelated single-process jobs; ``Accelerator(cpu=True)`` makes them one gloo process group instead."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not has_accelerator()


class UsageError(Exception):
    """A mistake in a recipe's arguments or files. ``run_recipe`` prints it as one line and exits with code 2."""


@contextlib.contextmanager
def usage_errors():
    """Turn the errors a user's arguments or files cause while a run is set up (bad values, unknown names, missing
    files) into :class:`UsageError`; wraps only the set-up, so a bug during training keeps its traceback."""
    from ..core.plugins import PluginLoadError
    from ..core.registry import UnknownComponentError
    from ..data.images import DataError

    try:
        yield
    except (ValueError, FileNotFoundError, DataError, UnknownComponentError, PluginLoadError) as err:
        raise UsageError(str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)) from err


def run_recipe(main) -> None:
    """A recipe's ``__main__``: ``main()``, with a :class:`UsageError` shown as ``<recipe>: error: ...`` (exit 2)
    and a run that diverged (:class:`~vqstack.training.faults.TrainingDiverged`) as one line too (exit 1)."""
    from .faults import TrainingDiverged

    try:
        main()
    except UsageError as err:
        print(f"{Path(sys.argv[0]).name}: error: {err}", file=sys.stderr)
        sys.exit(2)
    except TrainingDiverged as err:
        print(f"{Path(sys.argv[0]).name}: stopped: {err}", file=sys.stderr)
        sys.exit(1)
