"""Plugins: registration through hooks, entry-point discovery, blocking, the training hooks, `vqstack plugins`."""
import subprocess
import sys
import textwrap
import types

import pluggy
import pytest

import vqstack
from vqstack.cli import main as cli_main
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


def test_broken_plugin_names_itself_and_the_way_out(fresh_plugins, tmp_path):
    write_distribution(tmp_path)
    (tmp_path / "vqstack_fake.py").write_text("raise ImportError('needs torch 9')\n")
    fresh_plugins.syspath_prepend(str(tmp_path))
    with pytest.raises(vqstack.PluginLoadError, match="'fakeplugin'.*needs torch 9.*VQSTACK_DISABLE_PLUGINS=fakeplugin"):
        vqstack.components("quantizer")


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
