"""The restorer recipe on a tiny random tokenizer: its outputs, its fixed held-out evaluation, reproducible training
pairs, and one clear line for each mistake (exact resume: tests/test_recipe_resume.py)."""
import json
import os
import signal
import subprocess
import sys

import pytest
import torch

import vqstack
from helpers.recipes import (ROOT, SHARED_DATA, load_recipe, reset_accelerate, tiny_tokenizer_config,
                             write_image_folder)
from vqstack.data.degradations import parse_spec
from vqstack.restorers.saving import load_restorer
from vqstack.training.runtime import UsageError

recipe = load_recipe("restore_anime")
TINY = ["--width", "32", "--depth", "1", "--heads", "2", "--batch-size", "4", "--eval-images", "4",
        "--num-workers", "0", "--log-every", "1", "--warmup-steps", "1"]
RESIDUAL = {"name": "residual", "kwargs": {"dim": 8, "codebook_size": 32, "num_quantizers": 2}}


def save_tokenizer(path, seed, quantizer=None):
    torch.manual_seed(seed)
    vqstack.Tokenizer.from_config(tiny_tokenizer_config(quantizer)).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("restore-recipe")
    write_image_folder(root / "images", count=40, size=24)  # 36 training images, 4 held out (40 // 10)
    save_tokenizer(root / "tokenizer-a", seed=0)
    save_tokenizer(root / "tokenizer-b", seed=1)
    return root


def run(inputs, output, *extra, tokenizer="tokenizer-a", steps=2):
    reset_accelerate()
    torch.manual_seed(1234)
    return recipe.main(["--tokenizer", str(inputs / tokenizer), "--data", str(inputs / "images"), *TINY,
                        "--max-steps", str(steps), "--output-dir", str(output), *map(str, extra)])


def records(output) -> list[dict]:
    return [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]


CASES = ("down4+noise0.05", "blur2", "jpeg20")  # the default --eval-degradations


def test_tiny_run_writes_every_output(inputs, tmp_path):
    result = run(inputs, tmp_path, "--checkpoint-every", 2, "--eval-every", 2, "--sample-every", 2,
                 "--checkpoints-to-keep", 1, steps=4)
    assert result["state"].step == 4 and result["stopped_by"] is None
    assert [p.name for p in tmp_path.glob("checkpoint-*")] == ["checkpoint-4"]
    assert (tmp_path / "checkpoint-4" / "COMPLETE").is_file()
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == ["step-2.png", "step-4.png"]
    from PIL import Image

    with Image.open(tmp_path / "samples" / "step-4.png") as grid:  # 5 rows of 4 held-out 16x16 images
        assert grid.size == (2 + 4 * 18, 2 + 5 * 18)
    lines = records(tmp_path)
    steps = [r for r in lines if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4]
    for key in ("loss", "code_ce", "feature_l2", "code_accuracy", "lr", "images_per_sec", "skipped_images"):
        assert key in steps[0], key
    assert steps[0]["loss"] == pytest.approx(0.5 * steps[0]["code_ce"] + steps[0]["feature_l2"], rel=1e-4)
    evals = [r for r in lines if "eval/psnr" in r]
    assert [r["step"] for r in evals] == [2, 4]
    names = ["code_accuracy", "code_ce", "feature_l2", "psnr", "psnr_fidelity1", "psnr_tokenizer", "psnr_input",
             "ssim", "ssim_fidelity1", "ssim_tokenizer", "ssim_input"]
    for record in evals:
        for name in names:
            cases = [record[f"eval/{case}/{name}"] for case in CASES]
            assert record[f"eval/{name}"] == pytest.approx(sum(cases) / 3, abs=1e-5), name
        assert "eval/clean/psnr" in record and 0 <= record["eval/code_accuracy"] <= 1
    # the damaged inputs and the tokenizer alone do not change while the restorer trains
    assert evals[0]["eval/blur2/psnr_tokenizer"] == evals[1]["eval/blur2/psnr_tokenizer"]

    restorer, config = load_restorer(tmp_path / "restorer", inputs / "tokenizer-a")
    assert config["degradations"] == {"spec": recipe.DEFAULT_DEGRADATIONS, "seed": 0}
    assert config["image_size"] == 16 and config["trained"]["step"] == 4
    trained = result["restorer"].state_dict()
    assert all(torch.equal(value, trained[key]) for key, value in restorer.state_dict().items())
    with pytest.raises(ValueError, match="not for --tokenizer"):
        load_restorer(tmp_path / "restorer", inputs / "tokenizer-b")
    assert not list(tmp_path.glob("*.tmp"))


def test_evaluation_damages_each_held_out_image_the_same_fixed_way(inputs, tmp_path):
    """eval/<case>/psnr_tokenizer recomputed by hand: held-out image i damaged with the draws of (seed, 0, i)."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    from vqstack.data import ImageDataset, load_image_dataset

    run(inputs, tmp_path, "--eval-every", 1, "--eval-metrics", "psnr", "--seed", 3, steps=1)
    record = [r for r in records(tmp_path) if "eval/psnr" in r][-1]
    assert "eval/ssim" not in record
    tokenizer = vqstack.Tokenizer.from_pretrained(inputs / "tokenizer-a")
    data = load_image_dataset(str(inputs / "images"))
    held_out = ImageDataset(data.select(range(36, 40)), 16, random_flip=False)
    clean = torch.stack([held_out[i]["pixel_values"] for i in range(4)])
    blur = parse_spec("blur:2", seed=3)
    damaged = torch.stack([blur.sample(image, i, 0) for i, image in enumerate(clean)])
    psnr = peak_signal_noise_ratio(tokenizer.decode(tokenizer.encode(damaged)), clean, data_range=2.0,
                                   dim=(1, 2, 3))
    assert record["eval/blur2/psnr_tokenizer"] == pytest.approx(psnr.item(), abs=1e-4)
    psnr_input = peak_signal_noise_ratio(damaged, clean, data_range=2.0, dim=(1, 2, 3))
    assert record["eval/blur2/psnr_input"] == pytest.approx(psnr_input.item(), abs=1e-4)


def test_stlpips_evaluation(inputs, tmp_path):
    """ST-LPIPS (its own frozen VGG16) on request, here at --resolution 32 (the 16x16 tokenizer is convolutional)."""
    result = run(inputs, tmp_path, "--resolution", 32, "--eval-every", 1, "--eval-metrics", "psnr,stlpips", steps=1)
    assert result["restorer"].image_size == 32
    record = records(tmp_path)[-1]
    for key in ("eval/stlpips", "eval/stlpips_fidelity1", "eval/stlpips_tokenizer", "eval/jpeg20/stlpips_input",
                "eval/clean/stlpips"):
        assert 0 <= record[key] < 2, key
    assert "eval/ssim" not in record


def test_training_pairs_are_damaged_by_seed_epoch_and_index(inputs):
    """The damage is drawn in the data set (so in the workers) from (seed, epoch, index): any worker count gives
    the same batches, and the next epoch damages the same image differently."""
    from vqstack.data import ImageDataset, load_image_dataset

    images = ImageDataset(load_image_dataset(str(inputs / "images")), 16, seed=0)
    pairs = recipe.DegradedImages(images, parse_spec(recipe.DEFAULT_DEGRADATIONS, seed=0))

    def first_batch(workers, epoch):
        pairs.set_epoch(epoch)
        loader = torch.utils.data.DataLoader(pairs, batch_size=8, num_workers=workers)
        return next(iter(loader))

    a, b = first_batch(0, 0), first_batch(2, 0)
    assert torch.equal(a["degraded"], b["degraded"]) and torch.equal(a["pixel_values"], b["pixel_values"])
    assert not torch.equal(a["degraded"], a["pixel_values"])
    assert not torch.equal(first_batch(0, 1)["degraded"], a["degraded"])


@pytest.mark.parametrize("extra, message", [
    (["--degradations", "blurr:1"], r"unknown degradation 'blurr' \(did you mean 'blur'\?\)"),
    (["--eval-degradations", "jpeg:0"], r"jpeg:0: quality must lie in 1..100"),
    (["--width", "30", "--heads", "4"], "--width 30 must be divisible by --heads 4"),
    (["--eval-metrics", "psnr,lpips"], "choose from psnr, ssim, stlpips"),
    (["--eval-metrics", "stlpips"], "at least 18 pixels"),
    (["--batch-size", "64"], "cannot fill one batch of 64"),
], ids=["unknown-step", "bad-eval-case", "width-heads", "unknown-metric", "stlpips-too-small", "batch-too-large"])
def test_mistakes_are_named_before_training(inputs, tmp_path, extra, message):
    with pytest.raises(UsageError, match=message):
        run(inputs, tmp_path / "run", *extra)
    assert not list((tmp_path / "run").glob("checkpoint-*")), "nothing trained"


def test_a_multi_codebook_tokenizer_is_refused(inputs, tmp_path):
    save_tokenizer(tmp_path / "residual", seed=0, quantizer=RESIDUAL)
    with pytest.raises(UsageError, match="num_quantizers=2 codebooks; use a single-codebook tokenizer"):
        run(inputs, tmp_path / "run", tokenizer=tmp_path / "residual")
    assert not (tmp_path / "run").exists()


def test_a_missing_tokenizer_folder_is_refused(inputs, tmp_path):
    with pytest.raises(UsageError, match="No config.json in"):
        run(inputs, tmp_path / "run", tokenizer="nowhere")


def test_resuming_for_another_tokenizer_is_refused(inputs, tmp_path):
    run(inputs, tmp_path, "--checkpoint-every", 1, steps=1)
    with pytest.raises(UsageError, match="trained for another tokenizer"):
        run(inputs, tmp_path, "--resume", "latest", tokenizer="tokenizer-b", steps=2)


class TermAtStep:
    """Sends SIGTERM to this process at the end of ``step``, as a scheduler pre-empting the job would."""

    def __init__(self, step):
        self.step = step

    @vqstack.hookimpl
    def vqstack_on_step_end(self, step, logs):
        if step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_checkpoints_and_exports_the_restorer(inputs, tmp_path, fresh_plugins):
    vqstack.register_plugin(TermAtStep(1), name="term")
    result = run(inputs, tmp_path, steps=3)
    vqstack.unregister_plugin("term")
    assert result["stopped_by"] == "SIGTERM" and result["state"].step == 1
    assert (tmp_path / "checkpoint-1" / "COMPLETE").is_file()
    assert load_restorer(tmp_path / "restorer", inputs / "tokenizer-a")[1]["trained"]["step"] == 1
    resumed = run(inputs, tmp_path, "--resume", "latest", steps=3)
    assert resumed["state"].step == 3 and [r["step"] for r in records(tmp_path) if "loss" in r] == [1, 2, 3]


def test_an_unknown_degradation_ends_in_one_line_and_exit_code_2(inputs, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "recipes" / "restore_anime.py"), "--tokenizer", str(inputs / "tokenizer-a"),
         "--data", str(inputs / "images"), "--degradations", "down:4,nois:0.1", "--output-dir", str(tmp_path / "run")],
        capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith("restore_anime.py: error: unknown degradation 'nois' (did you mean 'noise'?)")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "anime-faces").is_dir(), reason="../shared/data/anime-faces is absent")
def test_restorer_learns_on_real_anime_faces(tmp_path):
    """20 steps on the real faces (the codes of a random 16x16 tokenizer are the target; listing the 20k-image
    folder takes most of the time): the code cross-entropy falls."""
    tokenizer = save_tokenizer(tmp_path / "tokenizer", seed=0)
    reset_accelerate()
    result = recipe.main(["--tokenizer", str(tokenizer), "--data", str(SHARED_DATA / "anime-faces"),
                          "--width", "64", "--depth", "2", "--heads", "4", "--batch-size", "16", "--lr", "2e-3",
                          "--warmup-steps", "3", "--max-steps", "20", "--log-every", "1", "--eval-every", "20",
                          "--eval-images", "16", "--eval-metrics", "psnr", "--num-workers", "0",
                          "--output-dir", str(tmp_path / "run")])
    assert result["state"].step == 20
    lines = records(tmp_path / "run")
    code_ce = [r["code_ce"] for r in lines if "loss" in r]
    assert len(code_ce) == 20
    assert sum(code_ce[-3:]) < 0.8 * sum(code_ce[:3]), code_ce
    assert "eval/code_accuracy" in lines[-1] and (tmp_path / "run" / "restorer" / "model.safetensors").is_file()
