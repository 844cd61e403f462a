"""Stage 2 end to end on tiny models: token datasets, the prior recipe, Pipeline, `vqstack sample` / `inpaint`."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

import vqstack
from helpers.recipes import load_recipe, reset_accelerate, tiny_tokenizer_config, write_stage2_inputs
from vqstack.cli import main as cli_main
from vqstack.data.tokens import encode_dataset
from vqstack import Pipeline


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A tagged image folder and a (random) tiny tokenizer saved next to it."""
    return write_stage2_inputs(tmp_path_factory.mktemp("stage2"))


@pytest.fixture(scope="module")
def trained(workdir):
    """The prior recipe run for a few steps on the tagged folder."""
    reset_accelerate()
    recipe = load_recipe("prior_anime")
    result = recipe.main(["--tokenizer", str(workdir / "tokenizer"), "--data", str(workdir / "images"),
                          "--preset", "tiny", "--batch-size", "8", "--max-steps", "4", "--log-every", "2",
                          "--sample-every", "4", "--checkpoint-every", "2", "--output-dir", str(workdir / "run")])
    return workdir, result


def test_token_dataset_keeps_labels_in_order(workdir):
    from accelerate import Accelerator
    from vqstack.data import ImageDataset, load_image_dataset

    reset_accelerate()
    tokenizer = vqstack.Tokenizer.from_pretrained(workdir / "tokenizer")
    images = load_image_dataset(str(workdir / "images"))
    tokens, info = encode_dataset(tokenizer, images, workdir / "tokens-test", 16, Accelerator(), ["hair", "eyes"],
                                  batch_size=5)
    assert len(tokens) == 24 and info["grid"] == [4, 4] and info["codebook_size"] == 32
    assert tokens["hair"] == images["hair"] and tokens["eyes"] == images["eyes"]
    first = tokenizer.encode(ImageDataset(images, 16, random_flip=False)[0]["pixel_values"][None])
    assert tokens[0]["tokens"] == first.flatten().tolist()


def test_multi_codebook_tokenizers_are_refused(workdir):
    from accelerate import Accelerator

    tokenizer = vqstack.Tokenizer.from_config(tiny_tokenizer_config(
        {"name": "residual", "kwargs": {"dim": 8, "num_quantizers": 2, "codebook_size": 16}}))
    with pytest.raises(ValueError, match="several tokens per position"):
        encode_dataset(tokenizer, None, workdir / "never", 16, Accelerator())


def test_prior_recipe_writes_prior_samples_and_metrics(trained):
    workdir, result = trained
    run = workdir / "run"
    assert result["state"].step == 4
    assert (run / "prior" / "model.safetensors").is_file() and (run / "samples" / "step-4.png").is_file()
    assert (run / "tokens" / "tokens_info.json").is_file()
    config = json.loads((run / "prior" / "config.json").read_text())
    assert config["kwargs"]["attributes"]["hair"] == ["blonde", "blue", "red"]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [2, 4]
    assert [r["step"] for r in records if "val_nll" in r] == [4]  # --eval-every 500: the last step only


def test_pipeline_is_reproducible_with_a_seed(trained):
    workdir, _ = trained
    pipe = Pipeline.from_pretrained(workdir / "tokenizer", workdir / "run" / "prior")
    a = pipe(3, labels="blue hair,green eyes", cfg_scale=2.0, seed=7)
    b = pipe(3, labels="blue hair,green eyes", cfg_scale=2.0, seed=7)
    c = pipe(3, labels="blue hair,green eyes", cfg_scale=2.0, seed=8)
    assert [im.size for im in a] == [(16, 16)] * 3
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b))
    assert not all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, c))


def test_unknown_label_names_the_known_ones(trained):
    workdir, _ = trained
    pipe = Pipeline.from_pretrained(workdir / "tokenizer", workdir / "run" / "prior")
    with pytest.raises(ValueError, match="blonde"):
        pipe(1, labels="purple hair", seed=0)


def test_cli_sample_writes_a_grid(trained, tmp_path):
    workdir, _ = trained
    out = tmp_path / "grid.png"
    assert cli_main(["sample", "--tokenizer", str(workdir / "tokenizer"), "--prior", str(workdir / "run" / "prior"),
                     "--n", "4", "--labels", "red hair", "--cfg-scale", "2", "--seed", "3", "--out", str(out),
                     "--device", "cpu"]) == 0
    with Image.open(out) as grid:
        assert grid.size == (2 * 18 + 2, 2 * 18 + 2)


def test_cli_reports_user_mistakes_in_one_line(trained, tmp_path, capsys):
    workdir, _ = trained
    common = ["--prior", str(workdir / "run" / "prior"), "--n", "1", "--out", str(tmp_path / "x.png")]
    assert cli_main(["sample", "--tokenizer", str(workdir / "tokenizer"), "--labels", "purple hair", *common]) == 2
    assert cli_main(["sample", "--tokenizer", str(tmp_path / "missing"), *common]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and "Traceback" not in lines[0]
    assert lines[0].startswith("vqstack sample: error: Unknown attribute tag 'purple hair'") and "blonde" in lines[0]
    assert "missing" in lines[1] and not (tmp_path / "x.png").exists()

