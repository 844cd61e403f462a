"""Components registered by reference (``"package.module:Attribute"``) and packages whose names load on first use.

Listing what is registered never imports a referenced module; building it does, once. A reference that cannot be
imported fails when it is first used, in one error naming the kind, the name, the plugin and the reference. Every
registered name of every kind resolves to a callable (checked the moment it registers, plugins included), and every
lazy package still gives every name of its ``__all__``."""
from __future__ import annotations

import importlib
import sys

import pytest

import vqstack
import vqstack.api as api
from vqstack.lazy import is_reference, lazy_exports, load_reference
from vqstack.core.plugins import BUILTIN_PLUGINS
from vqstack.core.registry import KIND_HOOKS, ComponentImportError, Registry

COMPONENT_MODULE = '''
IMPORTED = True


class Thing:
    def __init__(self, size: int = 1):
        self.size = size


NOT_CALLABLE = 3
'''


@pytest.fixture
def component_module(tmp_path, monkeypatch):
    """A module ``lazythings`` on sys.path, not imported yet (and forgotten after the test)."""
    (tmp_path / "lazythings.py").write_text(COMPONENT_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "lazythings", raising=False)
    yield "lazythings"
    sys.modules.pop("lazythings", None)


def owned_registry(owner: str = "myplugin") -> Registry:
    reg = Registry("quantizer")
    reg._current_owner = owner  # what the plugin manager sets while a plugin's hook runs
    return reg


# --- a reference is imported on first use, not when listed -------------------------------------------------------


def test_listing_a_reference_does_not_import_it(component_module):
    reg = owned_registry()
    assert reg.register("thing", "lazythings:Thing") == "lazythings:Thing"
    assert reg.names() == ["thing"] and "thing" in reg and len(reg) == 1 and list(reg) == ["thing"]
    assert reg.owner("thing") == "myplugin"
    assert "thing" in repr(reg)
    assert component_module not in sys.modules


def test_get_imports_a_reference_once_and_build_uses_it(component_module):
    reg = owned_registry()
    reg.register("thing", "lazythings:Thing")
    factory = reg.get("thing")
    thing_class = sys.modules[component_module].Thing
    assert factory is thing_class and reg.get("thing") is factory  # kept: imported once
    built = reg.build("thing", size=3)
    assert isinstance(built, thing_class) and built.size == 3
    assert vqstack.component_spec(built) == {"kind": "quantizer", "name": "thing", "kwargs": {"size": 3}}


def test_build_imports_a_reference(component_module):
    reg = owned_registry()
    reg.register("thing", "lazythings:Thing")
    assert reg.build("thing").size == 1
    with pytest.raises(TypeError, match="Cannot build quantizer 'thing' with \\['sise'\\].*accepts: size"):
        reg.build("thing", sise=2)


def test_a_dotted_attribute_is_a_reference():
    assert is_reference("vqstack.core.registry:Registry.register")
    assert load_reference("vqstack.core.registry:Registry.names") is Registry.names


def test_duplicates_are_found_between_a_class_and_a_reference(component_module):
    reg = owned_registry("first")
    reg.register("thing", "lazythings:Thing")
    reg._current_owner = "second"
    with pytest.raises(vqstack.DuplicateComponentError, match="'first' and by plugin 'second'"):
        reg.register("thing", dict)
    assert component_module not in sys.modules


def test_an_unknown_name_is_refused_without_importing(component_module):
    reg = owned_registry()
    reg.register("thing", "lazythings:Thing")
    with pytest.raises(vqstack.UnknownComponentError, match="Unknown quantizer 'thimg'.*thing.*Did you mean"):
        reg.owner("thimg")
    with pytest.raises(vqstack.UnknownComponentError, match="Unknown quantizer 'thimg'"):
        reg.get("thimg")
    assert component_module not in sys.modules


# --- user mistakes: one clear error each --------------------------------------------------------------------------


@pytest.mark.parametrize("factory", ["VectorQuantizer", "vqstack.quantizers.vq", "vqstack.quantizers.vq.VQ", "a:b:c",
                                     "vqstack quantizers:VQ", ":VectorQuantizer", "vqstack.quantizers.vq:", "1abc:X",
                                     ""])
def test_a_string_that_is_not_a_reference_is_refused_at_registration(factory):
    with pytest.raises(TypeError, match="not a reference of the form 'package.module:Attribute'"):
        owned_registry().register("x", factory)


@pytest.mark.parametrize("factory", [42, None, object()])
def test_a_factory_that_is_neither_callable_nor_a_reference_is_refused(factory):
    with pytest.raises(TypeError, match="must be callable .* or a 'package.module:Attribute' string"):
        owned_registry().register("x", factory)


@pytest.mark.parametrize("reference,cause,detail", [
    ("no_such_module_xyz:Thing", ModuleNotFoundError, "No module named 'no_such_module_xyz'"),
    ("lazythings:Missing", AttributeError, "Missing"),
    ("lazythings:NOT_CALLABLE", TypeError, "3 is not callable"),
])
def test_a_reference_that_cannot_be_loaded_names_kind_name_plugin_and_reference(component_module, reference, cause,
                                                                                  detail):
    reg = owned_registry("myplugin")
    reg.register("thing", reference)  # registering is fine: nothing is imported yet
    for use in (lambda: reg.get("thing"), lambda: reg.build("thing")):
        with pytest.raises(ComponentImportError) as err:
            use()
        message = str(err.value)
        assert "quantizer 'thing'" in message and "plugin 'myplugin'" in message and repr(reference) in message
        assert detail in message
        assert isinstance(err.value.__cause__, cause)
    assert isinstance(err.value, ImportError)


def test_a_reference_whose_module_fails_to_import_names_the_real_error(tmp_path, monkeypatch):
    (tmp_path / "brokenthings.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = owned_registry("myplugin")
    reg.register("broken", "brokenthings:Thing")
    with pytest.raises(ComponentImportError, match="No module named 'no_such_dependency_xyz'") as err:
        reg.get("broken")
    assert isinstance(err.value.__cause__, ModuleNotFoundError)
    sys.modules.pop("brokenthings", None)


def test_a_broken_reference_in_a_plugin_fails_only_when_built(fresh_plugins):
    class Plugin:
        @vqstack.hookimpl
        def vqstack_register_quantizers(self, registry):
            registry.register("ghost", "no_such_module_xyz.quantizer:Ghost")

    vqstack.register_plugin(Plugin(), name="ghostplugin")
    assert "ghost" in vqstack.components("quantizer")
    assert vqstack.registry("quantizer").owner("ghost") == "ghostplugin"
    with pytest.raises(ComponentImportError, match="quantizer 'ghost' \\(registered by plugin 'ghostplugin' as "
                                                   "'no_such_module_xyz.quantizer:Ghost'\\)"):
        vqstack.build("quantizer", "ghost", dim=8)


def test_conformance_skips_a_reference_whose_package_is_not_installed(fresh_plugins, tmp_path, monkeypatch):
    """A missing optional package means "not on this machine" (skipped), as for an eager plugin; a reference to a
    module that exists but lacks the attribute is the plugin's bug (failed)."""
    from vqstack.conformance import check_result

    (tmp_path / "needsextra.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    class Plugin:
        @vqstack.hookimpl
        def vqstack_register_quantizers(self, registry):
            registry.register("needs-extra", "needsextra:Quantizer")
            registry.register("misspelt", "vqstack.quantizers.vq:VectorQuantiser")

    vqstack.register_plugin(Plugin(), name="extraplugin")
    skipped = check_result("quantizer", "needs-extra")
    assert skipped.status == "skipped" and "no_such_dependency_xyz" in skipped.reason
    assert check_result("quantizer", "misspelt").status == "failed"
    sys.modules.pop("needsextra", None)


# --- every registered name resolves (a new component is checked the moment it registers) -------------------------

REGISTERED = [(kind, name) for kind in KIND_HOOKS for name in vqstack.components(kind)]


def test_every_kind_has_builtins():
    owners = {vqstack.registry(kind).owner(name) for kind, name in REGISTERED}
    assert set(BUILTIN_PLUGINS) <= owners, f"built-in plugins that register nothing: {set(BUILTIN_PLUGINS) - owners}"
    assert {kind for kind, _ in REGISTERED} == set(KIND_HOOKS)


@pytest.mark.parametrize("kind,name", REGISTERED, ids=[f"{k}-{n}" for k, n in REGISTERED])
def test_every_registered_name_resolves_to_a_callable(kind, name):
    assert callable(vqstack.registry(kind).get(name))


@pytest.mark.parametrize("package,builtins,kind", [
    ("vqstack.quantizers", "BUILTIN_QUANTIZERS", "quantizer"),
    ("vqstack.priors", "BUILTIN_PRIORS", "prior"),
    ("vqstack.restorers", "BUILTIN_RESTORERS", "restorer"),
    ("vqstack.conditions", "BUILTIN_CONDITIONS", "condition"),
])
def test_builtin_dicts_map_names_to_the_registered_classes(package, builtins, kind):
    table = getattr(importlib.import_module(package), builtins)
    assert table and all(isinstance(value, type) for value in table.values())
    assert {name: vqstack.registry(kind).get(name) for name in table} == table


# --- lazy packages: every public name, as before ------------------------------------------------------------------

LAZY_MODULES = [*BUILTIN_PLUGINS, "vqstack.api", "vqstack_simvq", "vqstack_maskgit"]


@pytest.mark.parametrize("module", LAZY_MODULES)
def test_every_public_name_of_a_lazy_module_resolves(module):
    mod = importlib.import_module(module)
    assert len(mod.__all__) == len(set(mod.__all__))
    assert [name for name in mod.__all__ if not hasattr(mod, name)] == []
    assert set(mod.__all__) <= set(dir(mod))
    namespace = {}
    exec(f"from {module} import *", namespace)
    assert [name for name in mod.__all__ if namespace.get(name) is not getattr(mod, name)] == []


def test_package_names_are_the_defining_modules_objects():
    from vqstack.priors import ARPrior, sample_tokens
    from vqstack.priors.ar import ARPrior as defined
    from vqstack.priors.sampling import sample_tokens as sampling
    from vqstack.quantizers import VectorQuantizer
    from vqstack.quantizers.vq import VectorQuantizer as vq

    assert ARPrior is defined and sample_tokens is sampling and VectorQuantizer is vq
    assert vqstack.evaluation.FeatureNetwork is api.FeatureNetwork
    assert vqstack.priors.ar is sys.modules["vqstack.priors.ar"]  # submodules are attributes, as when imported eagerly


@pytest.fixture
def lazy_package(tmp_path, monkeypatch):
    """A package ``lazypkg`` using lazy_exports, with a submodule and a computed name."""
    package = tmp_path / "lazypkg"
    package.mkdir()
    (package / "heavy.py").write_text("VALUE = object()\n")
    (package / "other.py").write_text("")
    (package / "__init__.py").write_text(
        "from vqstack.api import lazy_exports\n"
        "__all__ = ['VALUE', 'TABLE']\n"
        "__getattr__, __dir__ = lazy_exports(__name__, {'VALUE': 'heavy', 'TABLE': lambda: {'n': 1}})\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield importlib.import_module("lazypkg")
    for name in [m for m in sys.modules if m == "lazypkg" or m.startswith("lazypkg.")]:
        del sys.modules[name]


def test_lazy_exports_imports_on_first_use_and_keeps_the_value(lazy_package):
    assert "lazypkg.heavy" not in sys.modules and {"VALUE", "TABLE"} <= set(dir(lazy_package))
    value = lazy_package.VALUE
    assert value is sys.modules["lazypkg.heavy"].VALUE and vars(lazy_package)["VALUE"] is value  # kept
    assert lazy_package.TABLE == {"n": 1} and lazy_package.TABLE is lazy_package.TABLE
    assert lazy_package.other is sys.modules["lazypkg.other"]
    with pytest.raises(AttributeError, match="module 'lazypkg' has no attribute 'missing'"):
        lazy_package.missing
    assert not hasattr(lazy_package, "_private")


def test_lazy_exports_refuses_a_mapping_that_is_not_a_module_name():
    with pytest.raises(TypeError, match="'X' must map to a module name such as 'vq'"):
        lazy_exports(__name__, {"X": "heavy:X"})
