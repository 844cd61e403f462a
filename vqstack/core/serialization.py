"""Saving and loading components by registry name: a JSON config plus safetensors weights, never a pickle."""
from __future__ import annotations

import hashlib
import json
import pickle  # only for its exception type: nothing here unpickles without weights_only=True
import re
import zipfile
from pathlib import Path

from safetensors import SafetensorError, safe_open
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
    """The JSON object in ``directory/config.json``; a missing, damaged or non-object file is one clear error."""
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"No {CONFIG_NAME} in {directory}: not a directory written by save_pretrained().")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:  # truncated by a full disk or a broken copy
        raise ValueError(f"{path} is not valid JSON ({err}): the file is damaged or truncated; copy it again or "
                         f"save the model again.") from err
    if not isinstance(config, dict):
        raise ValueError(f"{path} holds a JSON {type(config).__name__}, not the object save_pretrained() writes.")
    return config


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


def tensor_shapes(path) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor in a safetensors file, read from its header alone (nothing is loaded).

    safetensors checks that the header covers the file exactly, so a truncated file fails here, with its name."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{path} is not a complete safetensors file ({err}): it is truncated or damaged; copy it "
                         f"again or save the model again.") from err


def shape_mismatches(module, found: dict[str, tuple[int, ...]]) -> list[str]:
    """'name is (a, b) in the file, the model has (c, d)' for each tensor both hold with different shapes."""
    expected = {name: tuple(t.shape) for name, t in module.state_dict().items()}
    return [f"{name} is {found[name]} in the file, the model built from the config has {expected[name]}"
            for name in sorted(found.keys() & expected.keys()) if found[name] != expected[name]]


def load_weights(module, directory, device="cpu") -> None:
    """Load ``directory/model.safetensors`` into ``module`` (built from ``directory/config.json``).

    A truncated file, a tensor whose shape the config does not give (an edited or swapped config.json) and a
    missing or extra tensor each fail with one ValueError naming the file, before any weight is copied."""
    path = Path(directory) / WEIGHTS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"No {WEIGHTS_NAME} in {directory}.")
    wrong = shape_mismatches(module, tensor_shapes(path))
    if wrong:
        more = f" (and {len(wrong) - 1} more)" if len(wrong) > 1 else ""
        raise ValueError(f"{path} does not fit the model built from {Path(directory) / CONFIG_NAME}: {wrong[0]}{more}. "
                         f"Was config.json edited, or copied from another model?")
    try:
        missing, unexpected = load_model(module, str(path), strict=False, device=str(device))
    except (SafetensorError, OSError, RuntimeError) as err:  # e.g. the file changed or broke after the check
        raise ValueError(f"Cannot load {path}: {first_sentence(err)}.") from err
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


def component_config(directory, kind: str | None = None) -> dict:
    """The ``{"kind", "name", "kwargs"}`` config of a folder written by :func:`save_component`, checked to be one
    (and of ``kind`` when given): a tokenizer folder or a swapped argument is named, not a KeyError."""
    config = read_config(directory)
    path = Path(directory) / CONFIG_NAME
    if "kind" not in config and "encoder" in config:
        raise ValueError(f"{path} describes a tokenizer, not a single component: load it with "
                         f"vqstack.Tokenizer.from_pretrained() (were two folders swapped?).")
    missing = [key for key in ("kind", "name", "kwargs") if key not in config]
    if missing:
        raise ValueError(f"{path} lacks {missing}: not a folder written by vqstack.save_component().")
    if kind is not None and config["kind"] != kind:
        raise ValueError(f"{directory} holds a {config['kind']} ({config['name']!r}), not a {kind}.")
    return config


def load_component(directory, device="cpu", kind: str | None = None):
    """Rebuild a component saved by :func:`save_component`, by its registry name, and load its weights.

    ``kind`` (e.g. ``"prior"``) refuses a folder holding another kind of component."""
    from .plugins import registry  # late: the registry loads plugins

    config = component_config(directory, kind)
    component = registry(config["kind"]).build(config["name"], **config["kwargs"])
    load_weights(component, directory, device)
    return component.to(device)


# --- checkpoints written by accelerate's save_state ----------------------------------------------------------------

# accelerate pickles optimizer, scheduler, sampler and RNG states and every register_for_checkpointing() object.
PICKLED_STATE = ("*.bin", "*.pkl", "*.pt")


def load_pickled_state(path):
    """``torch.load(path, weights_only=True)`` with accelerate's allow-list (numpy RNG states), or one ValueError
    naming the file: a truncated file, or one whose unpickling could run code, is never loaded."""
    from accelerate.utils import load  # adds numpy's RNG types to torch's weights_only allow-list

    try:  # mmap: checking a large optimizer or EMA state costs no copy (only zip-format files can be mapped)
        return load(str(path), map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as err:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))
        what = f"it references {found.group(1)}" if found else first_sentence(err)
        raise ValueError(f"{path} holds more than tensors and plain data ({what}); vqstack unpickles only with "
                         f"weights_only=True, so it refuses this file: use one written by vqstack or accelerate, or "
                         f"from a source you trust.") from err
    except (RuntimeError, OSError, EOFError, ValueError) as err:
        raise ValueError(f"{path} is not a complete torch.save file ({first_sentence(err)}): it is truncated or "
                         f"damaged.") from err


def first_sentence(err: BaseException) -> str:
    """The first sentence of an error message: torch's read errors go on for a paragraph."""
    text = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return text.split(". ")[0].rstrip(".")


def check_checkpoint_files(directory) -> None:
    """Refuse an ``accelerator.save_state`` folder holding a truncated or unsafe file, before
    ``accelerator.load_state(directory)`` reads it.

    accelerate loads most files with ``weights_only=True``, but its ``load_custom_state`` unpickles the
    ``register_for_checkpointing`` objects with ``weights_only=False`` (no option changes that), and it skips an
    unreadable RNG state silently. Each file passes here with ``weights_only=True`` first, so the later full
    unpickling can only rebuild what the restricted one accepted."""
    directory = Path(directory)
    for path in sorted(directory.glob("*.safetensors")):
        tensor_shapes(path)
    for path in sorted(p for pattern in PICKLED_STATE for p in directory.glob(pattern)):
        load_pickled_state(path)
