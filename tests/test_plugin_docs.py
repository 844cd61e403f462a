"""docs/plugins.md keeps up with the code: every hook with its signature, a contract section per registry kind naming
its check, every name of vqstack.api, and listings of plugin files identical to the files."""
from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

import vqstack.api as api
from vqstack.core import hookspecs
from vqstack.core.registry import KIND_HOOKS
from vqstack.conformance import CHECKS

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "plugins.md"
FENCE = re.compile(r"^```[a-z]*\n(.*?)^```", re.S | re.M)
LISTING = re.compile(r"# (plugins/[\w./-]+)\n")  # first line of a block that shows a plugin's file in full


def guide() -> str:
    return GUIDE.read_text()


def hookspec_functions() -> dict:
    """name -> function of every hook specification (pluggy marks them with a ``vqstack_spec`` attribute)."""
    marker = f"{hookspecs.PROJECT}_spec"
    return {name: fn for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(fn, marker)}


def signature(fn) -> str:
    return f"{fn.__name__}({', '.join(inspect.signature(fn).parameters)})"


def contracts_section() -> str:
    text = guide()
    start = text.index("\n## Contracts by kind")
    end = text.find("\n## ", start + 1)
    return text[start:end if end >= 0 else None]


def kind_section(kind: str) -> str | None:
    """The text of the ``### `kind`...`` subsection of the contracts, or None."""
    match = re.search(rf"^### `{re.escape(kind)}`.*?(?=^### |\Z)", contracts_section(), re.S | re.M)
    return match.group(0) if match else None


def test_hookspecs_are_found():
    specs = hookspec_functions()
    assert set(KIND_HOOKS.values()) <= set(specs), "every registration hook is a hookspec"
    assert "vqstack_on_step_end" in specs and "hookspec" not in specs and "hookimpl" not in specs


@pytest.mark.parametrize("name", sorted(hookspec_functions()))
def test_every_hook_is_documented_with_its_signature(name):
    expected = signature(hookspec_functions()[name])
    assert f"`{expected}`" in guide(), f"docs/plugins.md must document the hook as `{expected}`"


@pytest.mark.parametrize("kind", sorted(KIND_HOOKS))
def test_every_registry_kind_has_a_contract_section(kind):
    section = kind_section(kind)
    assert section is not None, (f"docs/plugins.md's 'Contracts by kind' lacks a '### `{kind}`: ...' section saying "
                                 f"what a {kind} must satisfy")
    if kind in CHECKS:
        assert CHECKS[kind].__name__ in section, f"the {kind} contract must say what {CHECKS[kind].__name__} checks"


def test_every_api_name_is_in_the_guide():
    text = guide()
    missing = [name for name in api.__all__ if f"`{name}`" not in text and f"`{name}(" not in text]
    assert not missing, f"docs/plugins.md's public API section does not mention {missing}"


def test_plugin_file_listings_match_the_files():
    """A block whose first line is ``# plugins/<path>`` shows that file whole: it must be the file as it is."""
    listings = [(m.group(1), block[m.end():]) for block in FENCE.findall(guide()) if (m := LISTING.match(block))]
    assert {path for path, _ in listings} >= {"plugins/vqstack-simvq/vqstack_simvq/simvq.py",
                                              "plugins/vqstack-simvq/vqstack_simvq/plugin.py"}
    for path, shown in listings:
        assert (ROOT / path).is_file(), f"docs/plugins.md lists {path}, which does not exist"
        assert shown == (ROOT / path).read_text(), f"docs/plugins.md's listing of {path} differs from the file"
