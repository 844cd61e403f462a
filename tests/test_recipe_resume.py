"""Exact resume, bit for bit, on every training path: a run resumed from its step-2 checkpoint ends with the same
weights, optimizer, scheduler and training state as the run that never stopped (one CPU process)."""
import json

import pytest
import torch
from safetensors.torch import load_file

from helpers.recipes import load_recipe, reset_accelerate, write_image_folder, write_stage2_inputs

TINY = ["--preset", "tiny", "--num-workers", "0", "--batch-size", "4", "--log-every", "1", "--eval-every", "100",
        "--sample-every", "100", "--checkpoint-every", "2", "--checkpoints-to-keep", "0", "--max-steps", "4"]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("images"), count=20)


def assert_same_checkpoints(a, b) -> None:
    """Every file accelerate saved (weights, optimizers, schedulers, RNG, registered objects) is identical."""
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    for name in names:
        if name.endswith(".safetensors"):
            x, y = load_file(a / name), load_file(b / name)
            assert x.keys() == y.keys(), name
            for key in x:
                assert torch.equal(x[key], y[key]), f"{name}: {key} differs after resume"
        elif name.endswith((".bin", ".pkl", ".pt")):
            # accelerate pickles numpy's RNG state in random_states_*.pkl; these are files this test just wrote
            trusted = name.startswith("random_states")
            x = torch.load(a / name, weights_only=not trusted)
            y = torch.load(b / name, weights_only=not trusted)
            assert_same_tree(x, y, name)


def assert_same_tree(x, y, where: str) -> None:
    if isinstance(x, torch.Tensor):
        assert torch.equal(x, y), f"{where} differs after resume"
    elif isinstance(x, dict):
        assert x.keys() == y.keys(), where
        for key in x:
            assert_same_tree(x[key], y[key], f"{where}[{key!r}]")
    elif isinstance(x, (list, tuple)):
        assert len(x) == len(y), where
        for i, (u, v) in enumerate(zip(x, y)):
            assert_same_tree(u, v, f"{where}[{i}]")
    elif type(x).__module__ == "numpy":
        assert (x == y).all(), f"{where} differs after resume"
    else:
        assert x == y, f"{where}: {x!r} != {y!r}"


def write_config(path, quantizer=None, loss=None):
    config = {}
    if quantizer:
        config["tokenizer"] = {"quantizer": quantizer}
    if loss:
        config["loss"] = loss
    path.write_text(json.dumps(config))
    return path


VQGAN_PATHS = {
    "vq-gan": [],  # the tiny preset: vq with k-means init and restarts, GAN from step 2, ST-LPIPS loss
    "grad-accum-2-gan": ["--grad-accum", "2"],
    "bf16-autocast": ["--mixed-precision", "bf16"],
    "channels-last": ["--channels-last", "--mixed-precision", "bf16"],
    "compile": ["--compile", "--ema-decay", "0.9"],  # the EMA copy stays eager; compiling takes minutes on a CPU
    "ema-weights": ["--ema-decay", "0.9"],
    "lecam": [{"loss": {"lecam": 0.1}}],
    "ema-quantizer": [{"quantizer": {"name": "ema", "kwargs": {"dim": 8, "codebook_size": 64}}}],
    "fsq": [{"quantizer": {"name": "fsq", "kwargs": {"dim": 8}}}],
    "lfq": [{"quantizer": {"name": "lfq", "kwargs": {"dim": 6}}}],
    "residual": [{"quantizer": {"name": "residual", "kwargs": {"dim": 8, "codebook_size": 32, "num_quantizers": 2}}}],
}


SLOW_PATHS = {"compile"}


@pytest.mark.parametrize("path", [pytest.param(path, marks=pytest.mark.slow) if path in SLOW_PATHS else path
                                  for path in VQGAN_PATHS], ids=list(VQGAN_PATHS))
def test_vqgan_resume_is_bitwise(images, tmp_path, path):
    extra = []
    for option in VQGAN_PATHS[path]:
        extra += ["--config", str(write_config(tmp_path / "config.json", **option))] if isinstance(option, dict) \
            else [option]
    recipe = load_recipe("vqgan_anime")

    def run(output, *more):
        reset_accelerate()
        torch.manual_seed(1234)  # anything the run does not seed itself shows up as a mismatch
        return recipe.main([*TINY, "--data", str(images), "--output-dir", str(output), *extra, *map(str, more)])

    straight = run(tmp_path / "straight")
    assert straight["state"].step == 4
    resumed = run(tmp_path / "resumed", "--resume", tmp_path / "straight" / "checkpoint-2")
    assert resumed["state"].step == 4
    assert_same_checkpoints(tmp_path / "straight" / "checkpoint-4", tmp_path / "resumed" / "checkpoint-4")


@pytest.fixture(scope="module")
def prior_inputs(tmp_path_factory):
    return write_stage2_inputs(tmp_path_factory.mktemp("prior-resume"))


@pytest.mark.parametrize("extra", [[], ["--grad-accum", "2"], ["--mixed-precision", "bf16"]],
                         ids=["plain", "grad-accum-2", "bf16-autocast"])
def test_prior_resume_is_bitwise(prior_inputs, tmp_path, extra):
    recipe = load_recipe("prior_anime")

    def run(output, *more):
        reset_accelerate()
        torch.manual_seed(1234)
        return recipe.main(["--tokenizer", str(prior_inputs / "tokenizer"), "--data", str(prior_inputs / "images"),
                            "--preset", "tiny", "--batch-size", "4", "--max-steps", "4", "--checkpoint-every", "2",
                            "--checkpoints-to-keep", "0", "--sample-every", "100", "--eval-every", "100",
                            "--warmup-steps", "1", "--output-dir", str(output), *extra, *map(str, more)])

    run(tmp_path / "straight")
    # the resumed run encodes its own tokens/ (same inputs, same tokens) and continues from step 2
    resumed = run(tmp_path / "resumed", "--resume", tmp_path / "straight" / "checkpoint-2")
    assert resumed["state"].step == 4
    assert_same_checkpoints(tmp_path / "straight" / "checkpoint-4", tmp_path / "resumed" / "checkpoint-4")


RESTORE_PATHS = {
    "plain": [],
    "grad-accum-2": ["--grad-accum", "2"],
    "bf16-autocast": ["--mixed-precision", "bf16"],
}


@pytest.mark.parametrize("path", RESTORE_PATHS, ids=list(RESTORE_PATHS))
def test_restore_resume_is_bitwise(prior_inputs, tmp_path, path):
    """Batches of 8 from 22 training images: 2 per epoch, so the resumed run starts at an epoch's end and crosses
    into new epochs, whose flips and damage it must draw as the straight run did; dropout reads the global RNG,
    and the evaluation and sample grid at step 2 must leave it alone."""
    recipe = load_recipe("restore_anime")

    def run(output, *more):
        reset_accelerate()
        torch.manual_seed(1234)
        return recipe.main(["--tokenizer", str(prior_inputs / "tokenizer"), "--data", str(prior_inputs / "images"),
                            "--width", "32", "--depth", "1", "--heads", "2", "--dropout", "0.1", "--batch-size", "8",
                            "--eval-images", "2", "--num-workers", "0", "--max-steps", "4", "--warmup-steps", "1",
                            "--checkpoint-every", "2", "--checkpoints-to-keep", "0", "--eval-every", "2",
                            "--sample-every", "2", "--log-every", "1", "--output-dir", str(output),
                            *RESTORE_PATHS[path], *map(str, more)])

    straight = run(tmp_path / "straight")
    assert straight["state"].step == 4 and straight["state"].epoch >= 1
    resumed = run(tmp_path / "resumed", "--resume", tmp_path / "straight" / "checkpoint-2")
    assert resumed["state"].step == 4
    assert_same_checkpoints(tmp_path / "straight" / "checkpoint-4", tmp_path / "resumed" / "checkpoint-4")


@pytest.mark.parametrize("extra", [["--reference"]], ids=["lineart-reference"])
def test_translate_resume_is_bitwise(prior_inputs, tmp_path, extra):
    """Batches of 8 from 20 training images: the resumed run crosses epochs, whose line styles and references it
    must draw as the straight run did; the grid and validation at step 2 must leave the RNG alone."""
    recipe = load_recipe("translate_anime")

    def run(output, *more):
        reset_accelerate()
        torch.manual_seed(1234)
        return recipe.main(["--tokenizer", str(prior_inputs / "tokenizer"), "--data", str(prior_inputs / "images"),
                            "--preset", "tiny", "--batch-size", "8", "--eval-images", "4", "--max-steps", "4",
                            "--warmup-steps", "1", "--checkpoint-every", "2", "--checkpoints-to-keep", "0",
                            "--eval-every", "2", "--sample-every", "2", "--log-every", "1",
                            "--output-dir", str(output), *extra, *map(str, more)])

    straight = run(tmp_path / "straight")
    assert straight["state"].step == 4 and straight["state"].epoch >= 1
    resumed = run(tmp_path / "resumed", "--resume", tmp_path / "straight" / "checkpoint-2")
    assert resumed["state"].step == 4
    assert_same_checkpoints(tmp_path / "straight" / "checkpoint-4", tmp_path / "resumed" / "checkpoint-4")
