"""Plugins import only the public API (``vqstack`` top level and ``vqstack.api``), and that API has what they need.

The scanner reads every .py file of every package under ``plugins/`` (tests included) with ``ast`` and reports,
as ``file:line``, each reach into another vqstack module: ``from vqstack.quantizers.base import X``,
``import vqstack.core.registry``, ``from vqstack import core``, ``importlib.import_module("vqstack.conformance")`` and
attribute chains such as ``vqstack.core.hookimpl`` after ``import vqstack``.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import vqstack
import vqstack.api as api
from vqstack.core.registry import KIND_HOOKS
from vqstack.conformance import CHECKS

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_PACKAGES = sorted(p for p in ROOT.glob("plugins/*/") if p.is_dir())
SKIPPED_DIRS = {"build", "dist", ".eggs", "__pycache__", ".venv"}  # build outputs, not the package's source
PUBLIC_MODULES = {"vqstack", "vqstack.api"}
# vqstack's own submodules and subpackages (vqstack.core, vqstack.conformance, ...): private to plugins except api.
# Read from the folder, not pkgutil, which leaves out subpackages without an __init__.py (vqstack.training).
PACKAGE_DIR = Path(vqstack.__file__).parent
SUBMODULES = {p.stem for p in PACKAGE_DIR.glob("*.py")} | {p.name for p in PACKAGE_DIR.iterdir()
                                                        if p.is_dir() and any(p.rglob("*.py"))}
SUBMODULES -= {"api", "__init__"}

# What a plugin of each registry kind builds on: base class / output type, helpers, and its conformance check.
API_BY_KIND = {
    "quantizer": ["Quantizer", "QuantizerOutput", "to_vectors", "to_maps", "usage_metrics", "nearest_codes", "fp32",
                  "CodebookQuantizer", "check_quantizer"],
    "encoder": ["Encoder", "ResnetBlock", "AttnBlock", "Downsample", "Normalize", "check_encoder"],
    "decoder": ["Decoder", "ResnetBlock", "AttnBlock", "Upsample", "Normalize", "check_decoder"],
    "discriminator": ["PatchDiscriminator", "check_discriminator"],
    "perceptual": ["FrozenPerceptualLoss", "MissingWeightsError", "check_perceptual"],
    "prior": ["PriorOutput", "ConditionVocab", "process_logits", "sample_from_logits", "cfg_combine",
              "check_sampling_options", "evaluating", "check_prior"],
    "features": ["FeatureNetwork", "MissingWeightsError", "check_features"],
    "restorer": ["Restorer", "RestorerOutput", "blend_codes", "tokenizer_sizes", "check_restorer"],
    "condition": ["Condition", "build_condition", "check_same_condition", "check_condition"],
}
EVERY_PLUGIN_NEEDS = ["hookimpl", "Registry", "check_component", "build_example", "example_kwargs",
                      "register_plugin", "unregister_plugin", "Tokenizer", "save_component", "load_component"]


def private_module(module: str) -> bool:
    return (module == "vqstack" or module.startswith("vqstack.")) and module not in PUBLIC_MODULES


def private_imports(source: str, filename: str = "<string>") -> list[str]:
    """``filename:line: statement`` for each use of a vqstack module other than ``vqstack`` and ``vqstack.api``."""
    tree = ast.parse(source, filename)
    aliases = {"vqstack"}  # names bound to the vqstack package itself, for the attribute-chain check
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases |= {a.asname for a in node.names if a.name == "vqstack" and a.asname}
    found = []
    for node in ast.walk(tree):
        bad = None
        if isinstance(node, ast.Import):
            bad = [a.name for a in node.names if private_module(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:  # relative imports are the plugin's
            if private_module(node.module):
                bad = [node.module]
            elif node.module == "vqstack":
                bad = [f"vqstack.{a.name}" for a in node.names if a.name in SUBMODULES]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            target = node.args[0].value
            if func in ("import_module", "__import__") and isinstance(target, str) and private_module(target):
                bad = [target]
        elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
              and node.attr in SUBMODULES):
            bad = [f"vqstack.{node.attr}"]
        if bad:
            found.append((node.lineno, f"{filename}:{node.lineno}: {ast.get_source_segment(source, node)}  "
                                       f"(uses {', '.join(bad)})"))
    return [text for _, text in sorted(set(found))]


def python_files(package: Path) -> list[Path]:
    """The package's own .py files: source and tests, not build outputs or hidden folders."""
    def own(folders: tuple[str, ...]) -> bool:
        return not any(f in SKIPPED_DIRS or f.startswith(".") or f.endswith(".egg-info") for f in folders)

    return sorted(p for p in package.rglob("*.py") if own(p.relative_to(package).parts[:-1]))


# --- (a) plugins import only the public API ---------------------------------------------------------------------


def test_every_plugin_package_is_scanned():
    names = {p.name for p in PLUGIN_PACKAGES}
    assert {"vqstack-example", "vqstack-simvq"} <= names, f"plugins/ holds {sorted(names)}"
    for package in PLUGIN_PACKAGES:
        assert python_files(package), f"{package.relative_to(ROOT)} has no .py file to scan"


@pytest.mark.parametrize("package", PLUGIN_PACKAGES, ids=lambda p: p.name)
def test_plugin_imports_only_the_public_api(package):
    found = [hit for path in python_files(package)
             for hit in private_imports(path.read_text(), str(path.relative_to(ROOT)))]
    assert not found, ("plugins may import only `vqstack` and `vqstack.api` (add what is missing to vqstack/api.py):\n"
                       + "\n".join(found))


PRIVATE_FORMS = [
    "from vqstack.quantizers.base import Quantizer",
    "import vqstack.core.registry",
    "import vqstack.core.registry as registry",
    "import torch, vqstack.conformance",
    "from vqstack.core import hookimpl",
    "from vqstack import core",
    "from vqstack import training",
    "from vqstack import Quantizer, conformance",
    "import importlib\nimportlib.import_module('vqstack.quantizers.vq')",
    "from importlib import import_module\nimport_module('vqstack.conformance')",
    "__import__('vqstack.core')",
    "import vqstack\nvqstack.core.hookimpl",
    "import vqstack as vq\nx = vq.conformance.check_component",
    "def f():\n    from vqstack.priors.sampling import filter_top_k",
]
PUBLIC_FORMS = [
    "import vqstack",
    "import vqstack as vq",
    "import vqstack.api",
    "import vqstack.api as api",
    "from vqstack import Quantizer, QuantizerOutput, hookimpl, api",
    "from vqstack.api import Quantizer, check_component",
    "from . import simvq\nfrom .simvq import SimVQ",
    "import torch\nimport vqstack\nvqstack.hookimpl\nvqstack.api.nearest_codes",
    "import importlib\nimportlib.import_module('vqstack.api')",
    "import vqstack_other.core",  # another package whose name starts with vqstack
]


@pytest.mark.parametrize("source", PRIVATE_FORMS)
def test_scanner_catches_each_private_form(source):
    found = private_imports(source, "plugin.py")
    last_line = source.count("\n") + 1
    assert found and found[0].startswith(f"plugin.py:{last_line}: "), found


@pytest.mark.parametrize("source", PUBLIC_FORMS)
def test_scanner_allows_the_public_forms(source):
    assert private_imports(source, "plugin.py") == []


# --- (b) the API has what a plugin needs ------------------------------------------------------------------------


def test_every_api_name_exists_once():
    assert len(api.__all__) == len(set(api.__all__)), "a name is listed twice in vqstack.api.__all__"
    missing = [name for name in api.__all__ if not hasattr(api, name)]
    assert not missing, f"vqstack.api.__all__ lists names it does not define: {missing}"


def test_api_docstring_lists_every_name():
    """The module's docstring is the table of contents plugin authors read: it names everything."""
    unlisted = [name for name in api.__all__ if f"``{name}``" not in api.__doc__]
    assert not unlisted, f"vqstack.api's docstring does not list {unlisted}"


@pytest.mark.parametrize("kind", sorted(KIND_HOOKS))
def test_api_covers_each_registry_kind(kind):
    assert kind in API_BY_KIND, (f"registry kind {kind!r} is new: export what its plugins build on (base class, "
                                 f"output type, helpers, its check) from vqstack.api and list them in API_BY_KIND")
    missing = [name for name in API_BY_KIND[kind] if name not in api.__all__]
    assert not missing, f"vqstack.api lacks what a {kind} plugin needs: {missing}"


def test_api_has_hookimpl_and_every_conformance_check():
    missing = [name for name in EVERY_PLUGIN_NEEDS if name not in api.__all__]
    missing += [check.__name__ for check in CHECKS.values() if check.__name__ not in api.__all__]
    assert not missing, f"vqstack.api lacks {missing}"
    assert api.hookimpl is vqstack.hookimpl
    assert api.Quantizer is vqstack.Quantizer and api.QuantizerOutput is vqstack.QuantizerOutput


def test_api_names_shared_with_the_top_level_are_the_same_objects():
    shared = set(api.__all__) & set(vqstack.__all__)
    assert {name for name in shared if getattr(api, name) is not getattr(vqstack, name)} == set()
