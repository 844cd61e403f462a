"""Saving and loading components by registry name: a JSON config plus safetensors weights, never a pickle."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from safetensors.torch import load_model, save_model

from .registry import component_spec

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def spec_of(component, role: str) -> dict:
    """The registry spec of ``component``, or a clear error when it cannot be saved by name."""
    spec = component_spec(component)
    if spec is None:
        raise ValueError(
            f"The {role} ({type(component).__name__}) was not made by vqstack.build(), so it cannot be saved by "
            f"name. Build it with vqstack.build(kind, name, **kwargs), or register its class through a plugin."
        )
    try:
        json.dumps(spec["kwargs"])
    except TypeError as err:
        raise ValueError(f"The {role}'s arguments {spec['kwargs']!r} are not JSON-serialisable: {err}.") from err
    return {"name": spec["name"], "kwargs": spec["kwargs"]}


def write_config(directory, config: dict) -> Path:
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    (path / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return path


def read_config(directory) -> dict:
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"No {CONFIG_NAME} in {directory}: not a directory written by save_pretrained().")
    return json.loads(path.read_text())


def save_weights(module, directory) -> None:
    save_model(module, str(Path(directory) / WEIGHTS_NAME))


def weights_sha256(directory) -> str:
    """sha256 of a saved component's weights file: what a token data set or a prior records of the tokenizer it
    was made with, so a different (e.g. retrained) tokenizer in the same place is noticed."""
    path = Path(directory) / WEIGHTS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"No {WEIGHTS_NAME} in {directory}.")
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_weights(module, directory, device="cpu") -> None:
    path = Path(directory) / WEIGHTS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"No {WEIGHTS_NAME} in {directory}.")
    missing, unexpected = load_model(module, str(path), strict=False, device=str(device))
    if missing or unexpected:
        raise ValueError(f"Weights in {path} do not match the model built from its config: "
                         f"missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}.")


def save_component(component, directory) -> Path:
    """Save one component built by :func:`vqstack.build` to ``directory``."""
    spec = component_spec(component)
    config = {"kind": spec["kind"] if spec else None, **spec_of(component, "component")}
    path = write_config(directory, config)
    save_weights(component, path)
    return path


def load_component(directory, device="cpu"):
    """Rebuild a component saved by :func:`save_component`, by its registry name, and load its weights."""
    from .plugins import registry  # late: the registry loads plugins

    config = read_config(directory)
    component = registry(config["kind"]).build(config["name"], **config["kwargs"])
    load_weights(component, directory, device)
    return component.to(device)
