"""What an evaluation writes: a JSON record that says what was measured with what, and a table for people."""
from __future__ import annotations

import importlib.metadata
import json
import os
from pathlib import Path

from ..core.serialization import weights_sha256

NOT_PUBLISHED_SCALE = ("stlpips is shift-tolerant LPIPS and fd-* are Fréchet distances on other networks than "
                       "InceptionV3: they are not LPIPS or FID and not comparable with published values.")


def versions() -> dict[str, str | None]:
    """Versions of the packages that compute the metrics (None for one that is not installed)."""
    def version(package):
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {name: version(name) for name in ("vqstack", "torch", "torchmetrics", "torch-fidelity", "lpips",
                                             "stlpips-pytorch")}


def saved_component(directory) -> dict:
    """Where a saved tokenizer or prior is, and the sha256 of its weights file."""
    return {"path": str(Path(directory).resolve()), "sha256": weights_sha256(directory)}


def make_record(values: dict[str, float], networks: dict[str, str], **context) -> dict:
    """Each metric under its own name at the top level, then the context (images, resolution, data, tokenizer,
    ...), the package versions and, under "networks", the network behind each distance."""
    clashes = sorted(set(values) & set(context))
    if clashes:  # a plugin's features name could shadow a context field
        raise ValueError(f"Metric names {clashes} clash with report fields; rename the features network.")
    return {**values, **context, "versions": versions(), "networks": networks}


def format_table(values: dict[str, float], networks: dict[str, str]) -> str:
    """One line per metric: name, value, network."""
    width = max(len(name) for name in values) if values else 0
    lines = [f"{name:<{width}}  {value:>12.6g}  {networks.get(name, '')}".rstrip() for name, value in values.items()]
    if any(name == "stlpips" or (name.startswith("fd-")) for name in values):
        lines.append(NOT_PUBLISHED_SCALE)
    return "\n".join(lines)


def write_json(record: dict, path) -> Path:
    """Write ``record`` to ``path`` whole or not at all (a crash never leaves a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(path.name + ".tmp")
    staging.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(staging, path)
    return path
