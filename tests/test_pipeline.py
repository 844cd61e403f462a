"""Stage 2 end to end on tiny models: token datasets, the prior recipe, Pipeline, `vqstack sample` / `inpaint`."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

import vqstack
from helpers.recipes import load_recipe, reset_accelerate, write_image_folder
from vqstack.cli import main as cli_main
from vqstack.data.tokens import encode_dataset
from vqstack.pipeline import Pipeline, from_pil

HAIR = ["blue", "red", "blonde", None]
NET = {"ch": 16, "ch_mult": [1, 2, 2], "num_res_blocks": 1, "attn_resolutions": [], "resolution": 16}


def tokenizer_config(quantizer=None):
    return {"encoder": {"name": "conv", "kwargs": {**NET, "out_channels": 16}},
            "quantizer": quantizer or {"name": "vq", "kwargs": {"dim": 8, "codebook_size": 32}},
            "decoder": {"name": "conv", "kwargs": {**NET, "in_channels": 16}}}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A tagged image folder and a (random) tiny tokenizer saved next to it."""
    root = tmp_path_factory.mktemp("stage2")
    images = write_image_folder(root / "images", count=24, size=16)
    with (images / "metadata.jsonl").open("w") as f:
        for i in range(24):
            f.write(json.dumps({"file_name": f"{i:03d}.png", "hair": HAIR[i % 4], "eyes": "green" if i % 3 else None})
                    + "\n")
    torch.manual_seed(0)
    vqstack.Tokenizer.from_config(tokenizer_config()).save_pretrained(root / "tokenizer")
    return root


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

    tokenizer = vqstack.Tokenizer.from_config(tokenizer_config(
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
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4]


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


def test_inpaint_keeps_tokens_outside_the_mask(trained, tmp_path, monkeypatch):
    workdir, _ = trained
    pipe = Pipeline.from_pretrained(workdir / "tokenizer", workdir / "run" / "prior")
    image = Image.open(workdir / "images" / "000.png")
    mask = np.zeros((16, 16), dtype=np.uint8)
    mask[:, 8:] = 255  # repair the right half: token columns 2 and 3 of the 4x4 grid
    seen = {}
    generate = pipe.prior.generate

    def spy(*args, **kwargs):
        seen["known"] = kwargs["known"].clone()
        return generate(*args, **kwargs)

    monkeypatch.setattr(pipe.prior, "generate", spy)
    repaired = pipe.inpaint(image, Image.fromarray(mask), labels="blue hair", seed=0)
    original = pipe.tokenizer.encode(from_pil(image, (16, 16))).view(4, 4)
    known = seen["known"].view(4, 4)
    assert (known[:, 2:] == -1).all() and torch.equal(known[:, :2], original[:, :2])
    assert repaired.size == (16, 16)
    # the CLI does the same from files
    image.save(tmp_path / "in.png")
    Image.fromarray(mask).save(tmp_path / "mask.png")
    assert cli_main(["inpaint", "--tokenizer", str(workdir / "tokenizer"), "--prior", str(workdir / "run" / "prior"),
                     "--image", str(tmp_path / "in.png"), "--mask", str(tmp_path / "mask.png"),
                     "--out", str(tmp_path / "out.png"), "--device", "cpu"]) == 0
    assert (tmp_path / "out.png").is_file()


def test_prior_recipe_takes_labels_from_a_metadata_file(workdir, tmp_path):
    """--metadata replaces the folder's tags; a tokens/ folder made with other labels is not silently reused."""
    recipe = load_recipe("prior_anime")
    labels = tmp_path / "labels.jsonl"
    labels.write_text("".join(json.dumps({"file_name": f"{i:03d}.png", "hair": "purple" if i % 2 else "aqua"}) + "\n"
                              for i in range(24)))
    args = ["--tokenizer", str(workdir / "tokenizer"), "--data", str(workdir / "images"), "--attributes", "hair",
            "--preset", "tiny", "--batch-size", "8", "--max-steps", "1", "--sample-every", "1",
            "--sample-labels", "purple hair", "--output-dir", str(tmp_path / "run")]
    reset_accelerate()
    recipe.main(args + ["--metadata", str(labels)])
    config = json.loads((tmp_path / "run" / "prior" / "config.json").read_text())
    assert config["kwargs"]["attributes"] == {"hair": ["aqua", "purple"]}
    labels.write_text(labels.read_text().replace("aqua", "green"))
    reset_accelerate()
    with pytest.raises(SystemExit, match="encoded with labels from"):
        recipe.main(args + ["--metadata", str(labels)])
