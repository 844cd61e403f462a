"""A restorer's folder: ``save_component``'s config.json and model.safetensors, plus the tokenizer it serves.

config.json gains ``"tokenizer": {"path", "weights_sha256"}`` and, from the recipe, ``"degradations"``
(``Degradation.to_config()``); a restorer only makes sense with the exact tokenizer whose codes it learned, so
loading it with another is refused, naming both.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..core.serialization import CONFIG_NAME, load_component, read_config, save_component, weights_sha256


def save_restorer(restorer, directory, tokenizer_dir, **record) -> Path:
    """Save ``restorer`` to ``directory`` with the identity of the tokenizer in ``tokenizer_dir`` (a folder written
    by ``Tokenizer.save_pretrained``) and any JSON-able ``record`` entries (e.g. ``degradations=``)."""
    path = save_component(restorer, directory)
    config = read_config(path)
    config["tokenizer"] = {"path": str(Path(tokenizer_dir).resolve()), "weights_sha256": weights_sha256(tokenizer_dir)}
    config.update(record)
    (path / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return path


def check_restorer_fits(restorer_dir, tokenizer_dir) -> dict:
    """The restorer folder's config, after checking it was trained for the tokenizer in ``tokenizer_dir``."""
    config = read_config(restorer_dir)
    if config.get("kind") != "restorer":
        what = "a tokenizer" if "encoder" in config else f"a {config.get('kind')}"
        raise ValueError(f"--restorer {restorer_dir} holds {what}, not a restorer (were --tokenizer and --restorer "
                         f"swapped?).")
    trained_for = config.get("tokenizer") or {}
    found = weights_sha256(tokenizer_dir)
    if trained_for.get("weights_sha256") != found:
        raise ValueError(
            f"The restorer {restorer_dir} was trained for the tokenizer {trained_for.get('path', '(unrecorded)')} "
            f"(weights sha256 {str(trained_for.get('weights_sha256'))[:12]}...), not for --tokenizer {tokenizer_dir} "
            f"(sha256 {found[:12]}...): its codes mean nothing to another tokenizer. Give the tokenizer it was "
            f"trained with, or train a restorer for this one with recipes/restore_anime.py.")
    return config


def load_restorer(restorer_dir, tokenizer_dir, device="cpu"):
    """``(restorer, config)`` from ``restorer_dir``, refused unless it was trained for ``tokenizer_dir``."""
    config = check_restorer_fits(restorer_dir, tokenizer_dir)
    return load_component(restorer_dir, device=device, kind="restorer").eval(), config
