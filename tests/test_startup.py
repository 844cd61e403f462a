"""Start-up stays light: ``vqstack --help`` (and every ``vqstack <command> --help``) builds its parser without
importing torch, ``vqstack plugins`` lists every plugin without importing torch, ``import vqstack`` imports neither
transformers nor the evaluation stack, and every public name still resolves (imported on first use). Each import
check runs in a fresh interpreter: this one has torch loaded.

Times are not asserted (shared machines are noisy); docs/benchmarks.md ("Start-up") has them and the commands."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import vqstack

# Each of these takes seconds to import; none is needed to print help or to `import vqstack`.
HEAVY = ("torch", "transformers", "torchmetrics", "torchvision", "datasets", "accelerate", "lpips", "stlpips")


def run_python(code: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run([sys.executable, *args, "-c", code] if code else [sys.executable, *args],
                          capture_output=True, text=True, timeout=120, env=env)


def loaded(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON line last."""
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


HELP_EVERY_COMMAND = f"""
import argparse, contextlib, io, json, sys
from vqstack.cli import build_parser, main

def heavy():
    return sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})

def help_of(argv):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            main([*argv, "--help"])
        except SystemExit as exit:
            assert exit.code == 0, (argv, exit.code)
    return out.getvalue()

found = {{"vqstack --help": heavy()}}
text = help_of([])
subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
commands = sorted(subparsers.choices)
for command in commands:
    assert command in text, command
    assert help_of([command]).startswith("usage: vqstack " + command), command
    found[f"vqstack {{command}} --help"] = heavy()
print(json.dumps({{"commands": commands, "heavy": found}}))
"""


def test_help_of_every_command_imports_no_torch():
    result = loaded(HELP_EVERY_COMMAND)
    assert {"plugins", "sample", "eval", "restore", "translate"} <= set(result["commands"])
    imported = {what: modules for what, modules in result["heavy"].items() if modules}
    assert not imported, ("--help must not import torch or other heavy packages (import them inside the command "
                          f"function; make defaults lazy): {imported}")


@pytest.mark.parametrize("argv", [["--help"], ["sample", "--help"], ["restore", "--help"]])
def test_the_module_entry_point_prints_help_without_torch(argv):
    """What a user runs, ``python -m vqstack.cli ...``; -X importtime lists every module it imported."""
    result = run_python("", "-X", "importtime", "-m", "vqstack.cli", *argv)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: vqstack")
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert not {m for m in imported if m.split(".")[0] in HEAVY}
    text = " ".join(result.stdout.split())
    assert "--device DEVICE" not in text or "(default: cuda if present)" in text


OUR_PLUGINS = {"example": "vqstack-example", "simvq": "vqstack-simvq", "maskgit": "vqstack-maskgit"}  # plugins/

LIST_PLUGINS = f"""
import contextlib, io, json, sys
from vqstack.cli import main

out = io.StringIO()
with contextlib.redirect_stdout(out):
    assert main(["plugins"]) == 0
print(json.dumps({{"output": out.getvalue(),
                  "heavy": sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})}}))
"""


def other_installed_plugins() -> list[str]:
    """Entry-point plugins installed here besides ours: blocked, since what they import is not vqstack's to fix."""
    import importlib.metadata

    names = {ep.name for ep in importlib.metadata.entry_points(group="vqstack")}
    return sorted(names - set(OUR_PLUGINS))


@pytest.mark.parametrize("plugins", ["built-ins only", "with plugins/"])
def test_vqstack_plugins_imports_no_torch(plugins, monkeypatch):
    """Listing plugins loads every plugin module but builds nothing: components registered as
    ``"module:Class"`` strings are not imported (docs/plugins.md, "Registering by reference")."""
    blocked = ["*"] if plugins == "built-ins only" else other_installed_plugins()
    monkeypatch.setenv("VQSTACK_DISABLE_PLUGINS", ",".join(blocked))
    result = loaded(LIST_PLUGINS)
    for builtin in ("vqstack.quantizers", "vqstack.priors", "vqstack.evaluation", "vqstack.conditions"):
        assert f"{builtin}  (vqstack " in result["output"]
    if plugins == "with plugins/":  # installed here and in CI (pip install -e plugins/*)
        for name, dist in OUR_PLUGINS.items():
            assert f"{name}  ({dist} " in result["output"], result["output"]
        assert "FAILED" not in result["output"], result["output"]
    assert not result["heavy"], ("`vqstack plugins` must not import torch or other heavy packages: register "
                                 f"components as 'package.module:Class' strings; it imported {result['heavy']}")


def test_import_vqstack_imports_neither_transformers_nor_the_evaluation_stack():
    modules = loaded("import json, sys, vqstack\nprint(json.dumps(sorted(sys.modules)))")
    assert "vqstack" in modules
    assert not [m for m in modules if m.split(".")[0] in ("transformers", "torchmetrics", "torch")]
    assert not [m for m in modules if m == "vqstack.evaluation" or m.startswith("vqstack.evaluation.")]


def test_the_tokenizer_and_quantizer_classes_come_without_transformers():
    modules = loaded("import json, sys, vqstack\nvqstack.Tokenizer, vqstack.Quantizer, vqstack.hookimpl\n"
                     "print(json.dumps(sorted(sys.modules)))")
    assert "torch" in modules and "vqstack.tokenizer" in modules
    assert not [m for m in modules if m.split(".")[0] in ("transformers", "torchmetrics")]


def test_every_public_name_resolves():
    missing = [name for name in vqstack.__all__ if not hasattr(vqstack, name)]
    assert not missing, f"vqstack.__all__ lists names that do not resolve: {missing}"
    assert len(vqstack.__all__) == len(set(vqstack.__all__))
    assert set(vqstack.__all__) <= set(dir(vqstack))


def test_star_import_and_from_import_bind_every_name_in_a_fresh_interpreter():
    result = loaded("import json\nfrom vqstack import *\nimport vqstack\n"
                    "names = vqstack.__all__\n"
                    "print(json.dumps([n for n in names if globals().get(n) is not getattr(vqstack, n)]))")
    assert result == []


def test_lazy_names_are_the_defining_modules_objects():
    from vqstack.core import hookimpl, registry
    from vqstack.pipelines import Pipeline, TranslatePipeline
    from vqstack.quantizers.base import Quantizer
    from vqstack.tokenizer import Tokenizer

    assert vqstack.hookimpl is hookimpl and vqstack.registry is registry
    assert vqstack.Pipeline is Pipeline and vqstack.TranslatePipeline is TranslatePipeline
    assert vqstack.Quantizer is Quantizer and vqstack.Tokenizer is Tokenizer


def test_submodules_are_attributes_and_unknown_names_fail():
    assert vqstack.priors.PriorOutput is vqstack.api.PriorOutput
    assert vqstack.core.KIND_HOOKS
    with pytest.raises(AttributeError, match="no_such_name"):
        vqstack.no_such_name
    assert not hasattr(vqstack, "_private")


def test_device_default_is_resolved_when_a_command_runs():
    import torch

    from vqstack.cli import build_parser, default_device

    args = build_parser().parse_args(["restore", "--tokenizer", "t", "--restorer", "r", "--image", "i", "--out", "o"])
    assert args.device is None  # the parser itself never asks torch
    assert default_device() == ("cuda" if torch.cuda.is_available() else "cpu")
