"""Checkpoint folders: ``checkpoint-<step>/``, written by accelerate's ``save_state`` into ``checkpoint-<step>.tmp``,
marked complete, then renamed: a run killed mid-save leaves a ``.tmp`` folder that resume ignores and the next
save removes, never a half-written ``checkpoint-<step>``."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..core.files import publish_dir
from ..data.images import SKIP_REASONS

PREFIX = "checkpoint-"
COMPLETE = "COMPLETE"  # written last, so a run killed mid-save never resumes from a half-written folder


class TrainState:
    """Where training stands; accelerate saves it with the models (``register_for_checkpointing``).

    ``step`` counts optimizer steps; ``batches_in_epoch`` counts micro-batches this process consumed in ``epoch``,
    so a resumed run skips exactly the data it has seen. ``skipped_steps`` (non-finite gradients) and
    ``skipped_images`` (unreadable images per reason, every process's) are the counters as of the checkpoint, so a
    resumed run goes on counting; a checkpoint written before they existed loads them as zero. ``planned_steps``
    is the length a ``--time-budget`` run planned (0 until it has), kept by a resumed run."""

    def __init__(self):
        self.step = 0
        self.epoch = 0
        self.batches_in_epoch = 0
        self.images_seen = 0
        self.skipped_steps = 0
        self.skipped_images = [0] * len(SKIP_REASONS)
        self.planned_steps = 0  # a --time-budget run's planned length, once measured (0: not planned)

    def state_dict(self) -> dict:
        return {key: list(value) if isinstance(value, list) else value for key, value in vars(self).items()}

    def load_state_dict(self, state: dict) -> None:
        for key, default in vars(self).items():
            value = state.get(key, default)
            setattr(self, key, [int(v) for v in value] if isinstance(default, list) else int(value))


def checkpoint_path(output_dir, step: int) -> Path:
    return Path(output_dir) / f"{PREFIX}{step}"


def checkpoint_step(path: Path) -> int | None:
    """The step of a ``checkpoint-<step>`` folder name; None for anything else (``.tmp`` folders included)."""
    suffix = path.name[len(PREFIX):]
    return int(suffix) if path.name.startswith(PREFIX) and suffix.isdigit() else None


def complete_checkpoints(output_dir) -> list[Path]:
    """Complete checkpoint folders in ``output_dir``, oldest first."""
    found = [p for p in Path(output_dir).glob(f"{PREFIX}*")
             if checkpoint_step(p) is not None and (p / COMPLETE).is_file()]
    return sorted(found, key=checkpoint_step)


def remove_incomplete(output_dir) -> list[Path]:
    """Remove the ``checkpoint-*.tmp`` folders a killed save left behind; returns what was removed."""
    stale = sorted(Path(output_dir).glob(f"{PREFIX}*.tmp"))
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale


def resolve_resume(resume: str | None, output_dir) -> Path | None:
    """``None`` -> fresh start; ``"latest"`` -> the newest complete checkpoint (or a fresh start when none);
    a path -> that checkpoint, which must be complete."""
    if not resume:
        return None
    if resume == "latest":
        found = complete_checkpoints(output_dir)
        return found[-1] if found else None
    path = Path(resume)
    if not (path / COMPLETE).is_file():
        known = ", ".join(p.name for p in complete_checkpoints(output_dir)) or "none"
        raise FileNotFoundError(f"--resume {resume}: not a complete checkpoint folder. "
                                f"Complete checkpoints in {output_dir}: {known}; or use --resume latest.")
    return path


class RunKey:
    """What a run was trained on (a tokenizer's weights hash, a token cache key: any JSON-able dict), saved with
    every checkpoint through ``accelerator.register_for_checkpointing``, so a resume against other inputs is
    noticed: after ``load_state``, ``loaded`` holds the checkpoint's key, to compare with ``key``."""

    def __init__(self, key: dict):
        self.key, self.loaded = dict(key), None

    def state_dict(self) -> dict:
        return {"key": json.dumps(self.key, sort_keys=True)}

    def load_state_dict(self, state: dict) -> None:
        self.loaded = json.loads(state["key"])


def load_resume(accelerator, resume: str | None, output_dir) -> Path | None:
    """``--resume`` ('latest', a checkpoint folder, or None for a fresh start) -> the checkpoint loaded into the
    accelerator's models, optimizers and registered objects, or None. Its pickles are checked first with
    ``weights_only=True`` (accelerate unpickles registered objects unrestricted). A missing or unsafe checkpoint is
    a ``UsageError``: one line, exit 2."""
    from ..core.serialization import check_checkpoint_files
    from .runtime import usage_errors

    with usage_errors():
        path = resolve_resume(resume, output_dir)
        if path is not None:
            check_checkpoint_files(path)
    if path is not None:
        accelerator.load_state(str(path))
    return path


def save_checkpoint(accelerator, output_dir, step: int, keep: int | None = None) -> Path:
    """Every process calls this (accelerate's ``save_state`` gathers what it needs); the main one marks the folder
    complete and removes all but the newest ``keep`` checkpoints."""
    path = checkpoint_path(output_dir, step)
    staging = path.with_name(path.name + ".tmp")
    if accelerator.is_main_process:
        remove_incomplete(output_dir)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (staging / COMPLETE).write_text(f"{step}\n")
        publish_dir(staging, path)
        if keep:
            for old in complete_checkpoints(output_dir)[:-keep]:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return path

