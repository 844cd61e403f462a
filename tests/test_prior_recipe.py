"""The prior recipe's token cache, held-out validation and its answers to bad input (tiny random tokenizers)."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

import vqstack
from helpers.recipes import ROOT, load_recipe, reset_accelerate, tiny_tokenizer_config, write_tagged_folder
from vqstack.core.serialization import weights_sha256
from vqstack.data.tokens import load_token_dataset
from vqstack.training.runtime import UsageError


def save_tokenizer(path, seed):
    torch.manual_seed(seed)
    tokenizer = vqstack.Tokenizer.from_config(tiny_tokenizer_config())
    tokenizer.save_pretrained(path)
    return tokenizer


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("prior-recipe")
    write_tagged_folder(root / "images")
    save_tokenizer(root / "tokenizer-a", seed=0)
    save_tokenizer(root / "tokenizer-b", seed=1)
    return root


def run(inputs, output, *extra, tokenizer="tokenizer-a", steps=2):
    reset_accelerate()
    return load_recipe("prior_anime").main([
        "--tokenizer", str(inputs / tokenizer), "--data", str(inputs / "images"), "--preset", "tiny",
        "--batch-size", "8", "--max-steps", str(steps), "--sample-every", "100", "--checkpoint-every", "1",
        "--log-every", "1", "--output-dir", str(output), *extra])


def encoded(tokenizer_dir, inputs):
    """The tokens ``tokenizer_dir`` gives the images, in data order."""
    from vqstack.data import ImageDataset, load_image_dataset

    tokenizer = vqstack.Tokenizer.from_pretrained(tokenizer_dir)
    images = ImageDataset(load_image_dataset(str(inputs / "images")), 16, random_flip=False)
    return torch.cat([tokenizer.encode(images[i]["pixel_values"][None]).flatten(1) for i in range(len(images))])


def test_a_second_tokenizer_never_trains_on_the_first_ones_tokens(inputs, tmp_path):
    out = tmp_path / "run"
    run(inputs, out)
    info = json.loads((out / "tokens" / "tokens_info.json").read_text())
    assert info["tokenizer_sha256"] == weights_sha256(inputs / "tokenizer-a")
    assert info["resolution"] == 16 and info["label_columns"] == ["hair", "eyes"]

    with pytest.raises(UsageError, match=r"tokenizer's weights.*--rebuild-tokens"):
        run(inputs, out, tokenizer="tokenizer-b")
    assert json.loads((out / "tokens" / "tokens_info.json").read_text()) == info  # untouched

    run(inputs, out, "--rebuild-tokens", tokenizer="tokenizer-b")
    tokens, info = load_token_dataset(out / "tokens")
    assert info["tokenizer_sha256"] == weights_sha256(inputs / "tokenizer-b")
    assert torch.equal(torch.tensor(tokens["tokens"]), encoded(inputs / "tokenizer-b", inputs))
    assert not torch.equal(torch.tensor(tokens["tokens"]), encoded(inputs / "tokenizer-a", inputs))
    # the prior records the tokenizer it was trained for, so Pipeline can tell
    prior_info = json.loads((out / "prior" / "tokens_info.json").read_text())
    assert prior_info["tokenizer_sha256"] == weights_sha256(inputs / "tokenizer-b")
    assert not list(out.glob("*.tmp")) and not list(out.glob("*.shards"))


def test_resuming_a_checkpoint_trained_on_other_tokens_is_refused(inputs, tmp_path):
    out = tmp_path / "run"
    run(inputs, out, steps=2)
    run(inputs, out, "--rebuild-tokens", tokenizer="tokenizer-b", steps=1)  # new tokens; checkpoint-2 is older
    with pytest.raises(UsageError, match="trained on tokens from other inputs"):
        run(inputs, out, "--resume", "latest", tokenizer="tokenizer-b", steps=3)


@pytest.mark.parametrize("change, expected", [("resolution", "--resolution"), ("data", "--data"),
                                              ("attributes", "label columns")])
def test_other_data_resolution_or_labels_are_noticed(inputs, tmp_path, change, expected):
    out = tmp_path / "run"
    run(inputs, out, steps=1)
    if change == "resolution":
        extra = ["--resolution", "32"]
    elif change == "attributes":
        extra = ["--attributes", "hair"]
    else:
        shutil.copytree(inputs / "images", tmp_path / "copy")
        extra = ["--data", str(tmp_path / "copy")]
    with pytest.raises(UsageError, match=expected):
        run(inputs, out, *extra, steps=1)


def test_the_data_folders_own_changed_tags_are_noticed(inputs, tmp_path):
    """The shared anime tags were rebuilt in place: a cache made from the old metadata.jsonl must not be reused."""
    data = shutil.copytree(inputs / "images", tmp_path / "images")
    out = tmp_path / "run"
    args = ["--data", str(data)]
    run(inputs, out, *args, steps=1)
    metadata = data / "metadata.jsonl"
    metadata.write_text(metadata.read_text().replace('"red"', '"pink"'))
    with pytest.raises(UsageError, match="metadata file"):
        run(inputs, out, *args, steps=1)


def test_validation_nll_is_logged_on_a_fixed_held_out_split(inputs, tmp_path):
    recipe = load_recipe("prior_anime")
    train_rows, val_rows = recipe.split_validation(1000, 0.02, seed=0)
    assert len(val_rows) == 20 and len(train_rows) == 980
    assert not set(val_rows.tolist()) & set(train_rows.tolist())
    assert torch.equal(recipe.split_validation(1000, 0.02, seed=0)[1], val_rows)
    assert not torch.equal(recipe.split_validation(1000, 0.02, seed=1)[1], val_rows)

    out = tmp_path / "run"
    run(inputs, out, "--val-fraction", "0.1", "--eval-every", "1", steps=2)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in records if "val_nll" in r]
    assert [r["step"] for r in val] == [1, 2] and all(r["val_sequences"] == 2 for r in val)
    assert all(0 < r["val_nll"] < 2 * torch.log(torch.tensor(32.0)) for r in val)  # near log(32) untrained


def test_tags_outside_the_datas_own_values_are_refused(inputs, tmp_path):
    labels = tmp_path / "labels.jsonl"
    labels.write_text("".join(json.dumps({"file_name": f"{i:03d}.png", "hair": "yellow" if i % 2 else "blue"}) + "\n"
                              for i in range(24)))
    with pytest.raises(UsageError, match=r"hair tags \['yellow'\] are not among.*--new-tags"):
        run(inputs, tmp_path / "run", "--metadata", str(labels), steps=1)
    assert not (tmp_path / "run" / "tokens").exists()
    run(inputs, tmp_path / "run", "--metadata", str(labels), "--new-tags", "--attributes", "hair",
        "--sample-labels", "yellow hair", steps=1)
    config = json.loads((tmp_path / "run" / "prior" / "config.json").read_text())
    assert config["kwargs"]["attributes"] == {"hair": ["blue", "yellow"]}


def test_prior_recipe_takes_labels_from_a_metadata_file(inputs, tmp_path):
    """--metadata replaces the folder's tags; a tokens/ folder made with other labels is not silently reused."""
    labels = tmp_path / "labels.jsonl"
    labels.write_text("".join(json.dumps({"file_name": f"{i:03d}.png", "hair": "red" if i % 2 else "blue"}) + "\n"
                              for i in range(24)))
    args = ["--metadata", str(labels), "--attributes", "hair", "--sample-labels", "red hair"]
    run(inputs, tmp_path / "run", *args, steps=1)
    config = json.loads((tmp_path / "run" / "prior" / "config.json").read_text())
    assert config["kwargs"]["attributes"] == {"hair": ["blue", "red"]}
    labels.write_text(labels.read_text().replace("blue", "blonde"))
    with pytest.raises(UsageError, match="--metadata"):
        run(inputs, tmp_path / "run", *args, steps=1)


def test_mistakes_end_in_one_line_and_exit_code_2(inputs, tmp_path):
    """From the shell: an unknown sample label gives one line, exit 2, and nothing half-written."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "recipes" / "prior_anime.py"), "--tokenizer", str(inputs / "tokenizer-a"),
         "--data", str(inputs / "images"), "--preset", "tiny", "--batch-size", "8", "--max-steps", "1",
         "--sample-labels", "purple hair",
         "--output-dir", str(tmp_path / "run")], capture_output=True, text=True, env=env, timeout=300)
    lines = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith("prior_anime.py: error: Unknown attribute tag 'purple hair'") and "blonde" in lines[0]
    assert not (tmp_path / "run" / "prior").exists()


def write_class_folder(folder, classes):
    """A 16x16 image folder whose metadata.jsonl gives each image a class id from ``classes`` (cycled)."""
    from helpers.recipes import write_image_folder

    write_image_folder(folder, count=24, size=16)
    with (folder / "metadata.jsonl").open("w") as f:
        for i in range(24):
            f.write(json.dumps({"file_name": f"{i:03d}.png", "cls": classes[i % len(classes)]}) + "\n")
    return folder


def run_classes(inputs, tmp_path, classes, names):
    reset_accelerate()
    images = write_class_folder(tmp_path / "images", classes)
    return load_recipe("prior_anime").main([
        "--tokenizer", str(inputs / "tokenizer-a"), "--data", str(images), "--preset", "tiny", "--attributes", "",
        "--class-column", "cls", "--class-names", names, "--batch-size", "8", "--max-steps", "1",
        "--sample-every", "100", "--output-dir", str(tmp_path / "run")])


def test_the_class_count_comes_from_the_names_not_from_the_classes_seen(inputs, tmp_path):
    """Shards holding one class (id 0) still train a prior over every named class (prior_cifar10 on one shard)."""
    result = run_classes(inputs, tmp_path, [0], "plane,car,bird")
    assert result["prior"].conditions.num_classes == 3
    assert result["prior"].conditions.class_names == ["plane", "car", "bird"]


def test_a_class_id_beyond_the_names_is_refused(inputs, tmp_path):
    with pytest.raises(UsageError, match="class id 3, but --class-names names 2 classes"):
        run_classes(inputs, tmp_path, [0, 3], "plane,car")


def test_a_plugin_prior_without_ars_sizes_trains_in_the_recipe(inputs, tmp_path, fresh_plugins):
    """--prior NAME passes dim/depth/heads only to a prior that takes them: a prior with sizes of its own trains."""
    from vqstack.priors.ar import ARPrior

    class FixedSizeAR(ARPrior):
        def __init__(self, vocab_size, seq_len, attributes=None, cond_dropout=0.1):
            super().__init__(vocab_size=vocab_size, seq_len=seq_len, attributes=attributes, dim=32, depth=1, heads=2,
                             cond_dropout=cond_dropout)

    class Plugin:
        @vqstack.hookimpl
        def vqstack_register_priors(self, registry):
            registry.register("fixed-ar", FixedSizeAR)

    vqstack.register_plugin(Plugin(), name="fixed-ar")
    result = run(inputs, tmp_path, "--prior", "fixed-ar", "--preset", "small")
    assert result["state"].step == 2 and result["prior"].backbone.config.hidden_size == 32
