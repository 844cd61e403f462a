"""Plugins: registration through hooks, entry-point discovery, blocking, the training hooks, `vqstack plugins`."""
import json
import subprocess
import sys
import textwrap
import types

import pluggy
import pytest

import vqstack
from vqstack.cli import main as cli_main
from vqstack.core.plugins import PluginWarning
from vqstack.quantizers import VectorQuantizer


class TinyVQ(VectorQuantizer):
    """A plugin's quantizer: the built-in one under another name, small by default."""

    def __init__(self, dim: int, codebook_size: int = 16):
        super().__init__(dim=dim, codebook_size=codebook_size)


def make_plugin(name="tiny-vq"):
    plugin = types.SimpleNamespace()

    @vqstack.hookimpl
    def vqstack_register_quantizers(registry):
        registry.register(name, TinyVQ)

    plugin.vqstack_register_quantizers = vqstack_register_quantizers
    return plugin


def test_plugin_registers_through_hook_and_builds(fresh_plugins):
    vqstack.register_plugin(make_plugin(), name="tiny")
    assert "tiny-vq" in vqstack.components("quantizer")
    q = vqstack.build("quantizer", "tiny-vq", dim=8)
    assert q.codebook_size == 16
    info = {p["name"]: p for p in vqstack.plugins_info()}
    assert info["tiny"]["components"] == {"quantizer": ["tiny-vq"]}
    vqstack.unregister_plugin("tiny")
    assert "tiny-vq" not in vqstack.components("quantizer")


def test_plugin_reusing_a_builtin_name_fails_loudly(fresh_plugins):
    vqstack.register_plugin(make_plugin("vq"), name="clash")
    with pytest.raises(vqstack.DuplicateComponentError, match="'vqstack.quantizers' and by plugin 'clash'"):
        vqstack.components("quantizer")


def test_builtins_can_be_blocked_and_replaced(fresh_plugins):
    fresh_plugins.setenv(vqstack.DISABLE_ENV, "vqstack.quantizers")
    assert not {"vq", "ema", "fsq", "lfq", "residual"} & set(vqstack.components("quantizer"))
    vqstack.register_plugin(make_plugin("vq"), name="replacement")
    assert vqstack.registry("quantizer").owner("vq") == "replacement"


def test_misspelled_hook_is_rejected(fresh_plugins):
    plugin = types.SimpleNamespace()

    @vqstack.hookimpl
    def vqstack_register_quantiser(registry):  # not a vqstack hook
        pass

    plugin.vqstack_register_quantiser = vqstack_register_quantiser
    with pytest.raises(pluggy.PluginValidationError, match="unknown hook 'vqstack_register_quantiser'"):
        vqstack.register_plugin(plugin, name="typo")


def test_every_hookspec_is_callable_with_its_documented_arguments(fresh_plugins):
    seen = []

    class Observer:
        @vqstack.hookimpl
        def vqstack_on_train_start(self, config, accelerator):
            seen.append(("start", config["lr"], accelerator))

        @vqstack.hookimpl
        def vqstack_on_step_end(self, step, logs):
            seen.append(("step", step, logs["loss"]))

        @vqstack.hookimpl
        def vqstack_on_validation_end(self, step, metrics):
            seen.append(("val", step, metrics["psnr"]))

        @vqstack.hookimpl
        def vqstack_on_checkpoint_saved(self, step, path):
            seen.append(("ckpt", step, path))

    vqstack.register_plugin(Observer(), name="observer")
    hook = vqstack.core.hook()
    hook.vqstack_on_train_start(config={"lr": 1e-4}, accelerator=None)
    hook.vqstack_on_step_end(step=3, logs={"loss": 0.5})
    hook.vqstack_on_validation_end(step=3, metrics={"psnr": 20.0})
    hook.vqstack_on_checkpoint_saved(step=3, path="ckpt")
    assert seen == [("start", 1e-4, None), ("step", 3, 0.5), ("val", 3, 20.0), ("ckpt", 3, "ckpt")]
    vqstack.core.plugin_manager().check_pending()


def write_distribution(root, plugin_name="fakeplugin", quantizer_name="fake-vq"):
    """An installed distribution on disk: a module plus a dist-info with a `vqstack` entry point."""
    for module in ("vqstack_fake", "vqstack_counter"):  # each test writes its own version of these
        sys.modules.pop(module, None)
    (root / "vqstack_fake.py").write_text(textwrap.dedent(f"""
        import vqstack
        from vqstack.quantizers import VectorQuantizer

        @vqstack.hookimpl
        def vqstack_register_quantizers(registry):
            registry.register({quantizer_name!r}, VectorQuantizer)
    """))
    dist = root / "vqstack_fake-1.2.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: vqstack-fake\nVersion: 1.2.3\n")
    (dist / "entry_points.txt").write_text(f"[vqstack]\n{plugin_name} = vqstack_fake\n")


def test_entry_point_plugin_is_discovered_with_its_distribution(fresh_plugins, tmp_path):
    write_distribution(tmp_path)
    fresh_plugins.syspath_prepend(str(tmp_path))
    assert "fake-vq" in vqstack.components("quantizer")
    info = {p["name"]: p for p in vqstack.plugins_info()}
    assert info["fakeplugin"]["distribution"] == "vqstack-fake"
    assert info["fakeplugin"]["version"] == "1.2.3"


def test_environment_variable_blocks_an_entry_point(fresh_plugins, tmp_path):
    write_distribution(tmp_path)
    fresh_plugins.syspath_prepend(str(tmp_path))
    fresh_plugins.setenv(vqstack.DISABLE_ENV, "fakeplugin")
    assert "fake-vq" not in vqstack.components("quantizer")
    assert "fakeplugin" not in {p["name"] for p in vqstack.plugins_info()}


def broken_plugin(fresh_plugins, tmp_path, source: str):
    """An installed plugin 'fakeplugin' whose module is ``source``."""
    write_distribution(tmp_path)
    (tmp_path / "vqstack_fake.py").write_text(textwrap.dedent(source))
    fresh_plugins.syspath_prepend(str(tmp_path))


def test_a_plugin_that_fails_to_import_is_named_and_the_rest_works(fresh_plugins, tmp_path):
    broken_plugin(fresh_plugins, tmp_path, "raise ImportError('needs torch 9')\n")
    with pytest.warns(PluginWarning, match="'fakeplugin' \\(vqstack-fake 1.2.3\\).*import.*needs torch 9"
                                           ".*VQSTACK_DISABLE_PLUGINS=fakeplugin"):
        names = vqstack.components("quantizer")
    assert {"vq", "ema", "fsq", "lfq", "residual"} <= set(names)
    vqstack.build("quantizer", "vq", dim=8)
    info = {p["name"]: p for p in vqstack.plugins_info()}
    if "example" in info:  # another installed plugin keeps working too
        assert info["example"]["error"] is None and "random-projection" in names
    assert info["fakeplugin"]["components"] == {} and info["fakeplugin"]["version"] == "1.2.3"
    assert "ImportError: needs torch 9" in info["fakeplugin"]["error"]
    assert info["vqstack.quantizers"]["error"] is None


def test_a_failing_registration_hook_skips_the_whole_plugin(fresh_plugins, tmp_path):
    broken_plugin(fresh_plugins, tmp_path, """
        import vqstack
        from vqstack.quantizers import VectorQuantizer

        @vqstack.hookimpl
        def vqstack_register_encoders(registry):
            registry.register("half-registered", VectorQuantizer)

        @vqstack.hookimpl
        def vqstack_register_quantizers(registry):
            raise RuntimeError("config file missing")
    """)
    with pytest.warns(PluginWarning, match="'fakeplugin'.*vqstack_register_quantizers.*config file missing"):
        assert "vq" in vqstack.components("quantizer")
    assert "half-registered" not in vqstack.components("encoder")  # nothing of a failed plugin stays
    assert {p["name"]: p for p in vqstack.plugins_info()}["fakeplugin"]["error"].startswith(
        "failed in vqstack_register_quantizers")


def test_a_plugin_with_a_misspelt_hook_is_skipped(fresh_plugins, tmp_path):
    broken_plugin(fresh_plugins, tmp_path, """
        import vqstack

        @vqstack.hookimpl
        def vqstack_register_quantiser(registry):
            pass
    """)
    with pytest.warns(PluginWarning, match="'fakeplugin'.*unknown hook 'vqstack_register_quantiser'"):
        assert "vq" in vqstack.components("quantizer")


def test_a_blocked_broken_plugin_is_silent(fresh_plugins, tmp_path, recwarn):
    broken_plugin(fresh_plugins, tmp_path, "raise ImportError('needs torch 9')\n")
    fresh_plugins.setenv(vqstack.DISABLE_ENV, "fakeplugin")
    vqstack.components("quantizer")
    assert not [w for w in recwarn if issubclass(w.category, PluginWarning)]
    assert "fakeplugin" not in {p["name"] for p in vqstack.plugins_info()}


def test_an_installed_plugin_reusing_a_name_still_fails_loudly(fresh_plugins, tmp_path):
    write_distribution(tmp_path, quantizer_name="vq")
    fresh_plugins.syspath_prepend(str(tmp_path))
    with pytest.raises(vqstack.DuplicateComponentError, match="'vqstack.quantizers' and by plugin 'fakeplugin'"):
        vqstack.components("quantizer")


def test_cli_plugins_lists_a_failed_plugin_with_its_error(fresh_plugins, tmp_path, capsys):
    broken_plugin(fresh_plugins, tmp_path, "raise ImportError('needs torch 9')\n")
    with pytest.warns(PluginWarning):
        assert cli_main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "fakeplugin  (vqstack-fake 1.2.3)\n    FAILED, skipped: failed in import" in out
    assert "needs torch 9" in out and "VQSTACK_DISABLE_PLUGINS=fakeplugin" in out
    assert "quantizer: ema, fsq, lfq, residual, vq" in out
    assert cli_main(["plugins", "--json"]) == 0
    info = {p["name"]: p for p in json.loads(capsys.readouterr().out)}
    assert "needs torch 9" in info["fakeplugin"]["error"] and info["vqstack.quantizers"]["error"] is None


class BadCodesVQ(VectorQuantizer):
    """A plugin quantizer breaking the contract: its indices do not decode to its output."""

    def __init__(self, dim: int, codebook_size: int = 16):
        super().__init__(dim=dim, codebook_size=codebook_size)

    def indices_to_codes(self, indices):
        return super().indices_to_codes((indices + 1) % self.codebook_size)


class NeedsWeights(VectorQuantizer):
    """A plugin quantizer whose pretrained codebook is not on this machine."""

    def __init__(self, dim: int):
        raise FileNotFoundError(f"weights /nowhere/codebook-{dim}.pt not found")

    @classmethod
    def example_kwargs(cls) -> dict:
        return {"dim": 8}


def test_cli_plugins_check_reports_each_component(fresh_plugins, capsys):
    plugin = types.SimpleNamespace()

    @vqstack.hookimpl
    def vqstack_register_quantizers(registry):
        registry.register("bad-codes", BadCodesVQ)
        registry.register("needs-weights", NeedsWeights)

    plugin.vqstack_register_quantizers = vqstack_register_quantizers
    vqstack.register_plugin(plugin, name="shaky")
    assert cli_main(["plugins", "--check", "--kind", "quantizer"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert "quantizer vq (vqstack.quantizers): ok" in lines
    assert "quantizer bad-codes (shaky): FAILED: AssertionError: BadCodesVQ: indices_to_codes(indices) != " \
           "quantized in eval mode" in lines
    assert "quantizer needs-weights (shaky): skipped: cannot build here: FileNotFoundError: weights " \
           "/nowhere/codebook-8.pt not found" in lines
    assert not [line for line in lines if line.startswith(("encoder", "prior"))]  # --kind quantizer only
    assert "1 failed, 1 skipped" in lines[-1]
    assert cli_main(["plugins", "--check", "--kind", "quantizer", "--json"]) == 1
    report = {r["name"]: r for r in json.loads(capsys.readouterr().out)["components"]}
    assert report["bad-codes"]["status"] == "failed" and report["needs-weights"]["status"] == "skipped"
    assert report["vq"] == {"kind": "quantizer", "name": "vq", "plugin": "vqstack.quantizers", "status": "ok",
                            "reason": ""}
    vqstack.unregister_plugin("shaky")
    assert cli_main(["plugins", "--check", "--kind", "quantizer"]) == 0


def test_cli_plugins_check_fails_on_a_plugin_that_did_not_load(fresh_plugins, tmp_path, capsys):
    broken_plugin(fresh_plugins, tmp_path, "raise ImportError('needs torch 9')\n")
    with pytest.warns(PluginWarning):
        assert cli_main(["plugins", "--check", "--kind", "encoder"]) == 1
    out = capsys.readouterr().out
    assert "plugin fakeplugin (vqstack-fake 1.2.3): FAILED: failed in import" in out
    assert "encoder conv (vqstack.autoencoders): ok" in out


def test_cli_plugins_kind_needs_check(capsys):
    assert cli_main(["plugins", "--kind", "quantizer"]) == 2
    assert "add --check" in capsys.readouterr().err


def test_entry_points_load_lazily_and_once(fresh_plugins, tmp_path):
    write_distribution(tmp_path)
    (tmp_path / "vqstack_fake.py").write_text(
        "import vqstack_counter\nvqstack_counter.loads += 1\n" + (tmp_path / "vqstack_fake.py").read_text())
    (tmp_path / "vqstack_counter.py").write_text("loads = 0\n")
    fresh_plugins.syspath_prepend(str(tmp_path))
    import vqstack_counter

    assert vqstack_counter.loads == 0  # nothing loaded before first use
    vqstack.components("quantizer")
    vqstack.components("encoder")
    vqstack.build("quantizer", "fake-vq", dim=4)
    assert vqstack_counter.loads == 1


def test_cli_plugins_lists_builtins_with_version():
    result = subprocess.run([sys.executable, "-m", "vqstack.cli", "plugins"], capture_output=True, text=True,
                            check=True)
    assert f"vqstack.quantizers  (vqstack {vqstack.__version__})" in result.stdout
    assert "quantizer: ema, fsq, lfq, residual, vq" in result.stdout
    assert "perceptual: lpips, stlpips" in result.stdout


def test_installed_example_plugin_is_discovered():
    """The example plugin in plugins/ is installed by the README's set-up command."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        version("vqstack-example")
    except PackageNotFoundError:
        pytest.skip("plugins/vqstack-example is not installed (the README's set-up command installs it)")
    info = {p["name"]: p for p in vqstack.plugins_info()}
    assert info["example"]["distribution"] == "vqstack-example"
    assert "random-projection" in vqstack.components("quantizer")


def test_cli_components(capsys):
    assert cli_main(["components", "quantizer"]) == 0
    assert capsys.readouterr().out.strip().startswith("quantizer: ema, fsq, lfq")
