"""Files from elsewhere: weights only through safetensors, pickled state only with weights_only=True, and a damaged
or mismatched file fails with one clear error naming it."""
import ast
import json
from pathlib import Path

import pytest
import torch

import vqstack
from helpers.recipes import ROOT, reset_accelerate, tiny_tokenizer_config
from vqstack.cli import main as cli_main
from vqstack.core.serialization import check_checkpoint_files, load_pickled_state

SCANNED = ("vqstack", "recipes", "benchmarks", "plugins")
PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib"}


# --- no unsafe loading anywhere in the source tree ----------------------------------------------------------------


def dotted(node) -> str:
    """'torch.load' for the expression torch.load; '' for anything that is not a plain dotted name."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = dotted(node.value)
        return f"{base}.{node.attr}" if base else ""
    return ""


def keyword_is(call: ast.Call, name: str, value) -> bool:
    return any(k.arg == name and isinstance(k.value, ast.Constant) and k.value.value is value for k in call.keywords)


def unsafe_loads(source: str, filename: str = "<source>") -> list[str]:
    """'file:line: why' for each call that may unpickle untrusted data: torch.load without weights_only=True, any
    call passing weights_only=False, pickle-family loads, and numpy.load(allow_pickle=True)."""
    tree = ast.parse(source, filename)
    aliases = {}  # local name -> what it was imported as ("from torch import load as tl" -> tl: torch.load)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            aliases.update({a.asname or a.name: f"{node.module}.{a.name}" for a in node.names})
        elif isinstance(node, ast.Import):
            aliases.update({a.asname or a.name: a.name for a in node.names})
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = dotted(node.func)
        head, _, rest = name.partition(".")
        name = f"{aliases.get(head, head)}.{rest}" if rest else aliases.get(head, head)
        module, _, function = name.rpartition(".")
        where = f"{filename}:{node.lineno}"
        if name == "torch.load" and not keyword_is(node, "weights_only", True):
            found.append(f"{where}: torch.load without weights_only=True")
        elif keyword_is(node, "weights_only", False):
            found.append(f"{where}: {name or 'a call'} with weights_only=False")
        elif module in PICKLE_MODULES and function in {"load", "loads", "Unpickler"}:
            found.append(f"{where}: {name} unpickles arbitrary objects")
        elif name in {"numpy.load", "np.load"} and keyword_is(node, "allow_pickle", True):
            found.append(f"{where}: {name} with allow_pickle=True")
    return found


def test_the_scanner_finds_each_unsafe_form():
    source = """
import pickle, torch
import numpy as np
from torch import load as tload
torch.load("a")
torch.load("a", weights_only=False)
tload("a")
pickle.loads(b"")
np.load("a", allow_pickle=True)
accelerate_load("a", weights_only=False)
torch.load("a", map_location="cpu", weights_only=True)   # safe
np.load("a")                                              # safe
"""
    found = unsafe_loads(source)
    assert [line.split(":")[1] for line in found] == ["5", "6", "7", "8", "9", "10"], found


def test_no_source_file_loads_a_pickle_unsafely():
    files = [p for folder in SCANNED for p in sorted((ROOT / folder).rglob("*.py")) if ".venv" not in p.parts]
    assert len(files) > 20, "the scan found too few files: wrong root?"
    found = [hit for path in files for hit in unsafe_loads(path.read_text(), str(path.relative_to(ROOT)))]
    assert not found, "unsafe loading (use safetensors, or torch.load(..., weights_only=True)):\n" + "\n".join(found)


# --- saved tokenizers and priors ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny tokenizer (save_pretrained) and prior (save_component), each in its own folder."""
    root = tmp_path_factory.mktemp("saved")
    torch.manual_seed(0)
    vqstack.Tokenizer.from_config(tiny_tokenizer_config()).save_pretrained(root / "tokenizer")
    prior = vqstack.build("prior", "ar", vocab_size=32, seq_len=16, dim=32, depth=1, heads=2)
    vqstack.save_component(prior, root / "prior")
    return root


def copy_of(saved, name: str, tmp_path) -> Path:
    import shutil

    return Path(shutil.copytree(saved / name, tmp_path / name))


def load(kind: str, directory):
    return vqstack.Tokenizer.from_pretrained(directory) if kind == "tokenizer" else vqstack.load_component(directory)


def edit_config(directory, edit) -> None:
    path = directory / "config.json"
    config = json.loads(path.read_text())
    edit(config)
    path.write_text(json.dumps(config))


@pytest.mark.parametrize("kind", ["tokenizer", "prior"])
@pytest.mark.parametrize("keep", [0.5, 0.99, 10])
def test_a_truncated_weights_file_is_named(saved, tmp_path, kind, keep):
    directory = copy_of(saved, kind, tmp_path)
    weights = directory / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[:keep if keep > 1 else int(len(data) * keep)])
    with pytest.raises(ValueError, match=f"{weights}.* is not a complete safetensors file.*truncated or damaged"):
        load(kind, directory)


CONFIG_EDITS = {
    ("tokenizer", "codebook_size"): ("quantizer.", lambda c: c["quantizer"]["kwargs"].update(codebook_size=64)),
    ("tokenizer", "channels"): ("encoder.", lambda c: c["encoder"]["kwargs"].update(ch=8)),
    ("prior", "vocab_size"): ("embed_tokens.weight is (33, 32) in the file, the model built from the config has "
                              "(65, 32) (and 1 more)", lambda c: c["kwargs"].update(vocab_size=64)),
    ("prior", "width"): ("backbone.", lambda c: c["kwargs"].update(dim=64)),
}


@pytest.mark.parametrize("kind,edited", list(CONFIG_EDITS), ids=[f"{k}-{e}" for k, e in CONFIG_EDITS])
def test_a_config_disagreeing_with_the_weights_names_the_tensor_and_both_shapes(saved, tmp_path, kind, edited):
    tensor, edit = CONFIG_EDITS[kind, edited]
    directory = copy_of(saved, kind, tmp_path)
    edit_config(directory, edit)
    with pytest.raises(ValueError) as err:
        load(kind, directory)
    message = str(err.value)
    assert message.startswith(f"{directory / 'model.safetensors'} does not fit the model built from "
                              f"{directory / 'config.json'}: ")
    assert tensor in message and "in the file, the model built from the config has" in message
    assert "\n" not in message and "config.json edited" in message


@pytest.mark.parametrize("kind", ["tokenizer", "prior"])
@pytest.mark.parametrize("text", ['{"encoder": {"name": "co', "\x00\xff binary", "[1, 2]"])
def test_a_damaged_config_is_named(saved, tmp_path, kind, text):
    directory = copy_of(saved, kind, tmp_path)
    (directory / "config.json").write_bytes(text.encode("latin-1"))
    with pytest.raises(ValueError, match=f"{directory / 'config.json'} (is not valid JSON|holds a JSON list)"):
        load(kind, directory)


def test_a_tokenizer_folder_is_not_loaded_as_a_component(saved):
    with pytest.raises(ValueError, match="describes a tokenizer.*Tokenizer.from_pretrained"):
        vqstack.load_component(saved / "tokenizer")


def test_cli_reports_a_truncated_tokenizer_in_one_line(saved, tmp_path, capsys):
    directory = copy_of(saved, "tokenizer", tmp_path)
    weights = directory / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    assert cli_main(["sample", "--tokenizer", str(directory), "--prior", str(saved / "prior"), "--n", "1",
                     "--out", str(tmp_path / "x.png"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"vqstack sample: error: {weights} is not a complete safetensors file")
    assert len(err.splitlines()) == 1


# --- accelerate checkpoints ---------------------------------------------------------------------------------------


class Payload:
    """Unpickling this touches ``marker``: a stand-in for code a crafted checkpoint would run."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (Path(self.marker),)


class Counter:
    """A register_for_checkpointing object, as the recipes' TrainState."""

    def __init__(self):
        self.step = 0

    def state_dict(self):
        return {"step": self.step}

    def load_state_dict(self, state):
        self.step = int(state["step"])


@pytest.fixture
def checkpoint(tmp_path):
    """A save_state folder: model, optimizer, RNG states and one custom object."""
    from accelerate import Accelerator

    reset_accelerate()
    accelerator = Accelerator(cpu=True)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    model, optimizer = accelerator.prepare(model, optimizer)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    counter = Counter()
    counter.step = 7
    accelerator.register_for_checkpointing(counter)
    accelerator.save_state(str(tmp_path / "checkpoint"))
    yield tmp_path / "checkpoint"
    reset_accelerate()


def test_a_checkpoint_from_save_state_passes_with_its_rng_states(checkpoint):
    check_checkpoint_files(checkpoint)
    assert load_pickled_state(checkpoint / "custom_checkpoint_0.pkl") == {"step": 7}
    rng = load_pickled_state(checkpoint / "random_states_0.pkl")  # numpy's state too, under weights_only=True
    assert {"random_state", "numpy_random_seed", "torch_manual_seed"} <= set(rng)


def test_a_pickle_that_would_run_code_is_refused_before_anything_runs(checkpoint, tmp_path):
    marker = tmp_path / "code-ran"
    torch.save({"step": Payload(marker)}, checkpoint / "custom_checkpoint_0.pkl")
    with pytest.raises(ValueError, match=r"custom_checkpoint_0.pkl holds more than tensors and plain data.*"
                                         r"weights_only=True"):
        check_checkpoint_files(checkpoint)
    assert not marker.exists()


@pytest.mark.parametrize("name", ["custom_checkpoint_0.pkl", "random_states_0.pkl", "optimizer.bin",
                                  "model.safetensors"])
def test_a_truncated_checkpoint_file_is_named(checkpoint, name):
    path = checkpoint / name
    path.write_bytes(path.read_bytes()[:-64])
    with pytest.raises(ValueError, match=f"{path} is not a complete .*truncated or damaged"):
        check_checkpoint_files(checkpoint)


def test_an_old_format_torch_file_is_checked_too(tmp_path):
    """torch.save's pre-1.6 format (e.g. torch-fidelity's InceptionV3 weights) cannot be memory-mapped."""
    torch.save({"w": torch.ones(2)}, tmp_path / "old.pth", _use_new_zipfile_serialization=False)
    assert torch.equal(load_pickled_state(tmp_path / "old.pth")["w"], torch.ones(2))
    torch.save({"w": Payload(tmp_path / "code-ran")}, tmp_path / "evil.pth", _use_new_zipfile_serialization=False)
    with pytest.raises(ValueError, match="evil.pth holds more than tensors"):
        load_pickled_state(tmp_path / "evil.pth")
    assert not (tmp_path / "code-ran").exists()
