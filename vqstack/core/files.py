"""Folders written whole or not at all: write into ``<name>.tmp``, then move it into place."""
from __future__ import annotations

import shutil
from pathlib import Path


def publish_dir(staging, final) -> Path:
    """Move the fully written folder ``staging`` to ``final``, replacing an older ``final`` only once the new one
    is complete: a run killed while writing leaves the previous folder (or nothing), never a half-written one."""
    staging, final = Path(staging), Path(final)
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    staging.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def staging_dir(final) -> Path:
    """An empty ``<final>.tmp`` folder to write into before :func:`publish_dir` (a stale one from a crash is
    removed)."""
    staging = Path(final).with_name(Path(final).name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    return staging
