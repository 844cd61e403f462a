"""The translator recipe (recipes/translate_anime.py) on tiny random tokenizers: what it saves and logs, the
held-out split, token rows matched to their images, the reference training views and bad options."""
import json

import pytest
import torch
from PIL import Image

import vqstack
from helpers.recipes import load_recipe, reset_accelerate, write_stage2_inputs
from vqstack.conditions.pairs import ConditionedTokens
from vqstack.conditions.reference import REFERENCE_CHANNELS, reference_view, with_reference
from vqstack.data import ImageDataset, load_image_dataset
from vqstack.data.tokens import load_token_dataset, source_rows
from vqstack.training.runtime import UsageError


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return write_stage2_inputs(tmp_path_factory.mktemp("translate"))


def run(inputs, output, *extra, steps=2):
    reset_accelerate()
    return load_recipe("translate_anime").main([
        "--tokenizer", str(inputs / "tokenizer"), "--data", str(inputs / "images"), "--preset", "tiny",
        "--batch-size", "8", "--eval-images", "4", "--max-steps", str(steps), "--eval-every", "2",
        "--sample-every", "2", "--checkpoint-every", "2", "--log-every", "1", "--output-dir", str(output), *extra])


def test_the_translator_records_its_condition_and_logs_held_out_nll(inputs, tmp_path):
    result = run(inputs, tmp_path / "run", "--reference")
    config = json.loads((tmp_path / "run" / "prior" / "config.json").read_text())
    kwargs = config["kwargs"]
    assert kwargs["image_condition"]["name"] == "lineart" and kwargs["reference"] is True
    assert kwargs["patch_size"] == 4 and kwargs["grid"] == [4, 4]  # the tiny tokenizer: 16 px -> 4x4 tokens
    prior = result["prior"]
    assert prior.condition_channels == 1 + REFERENCE_CHANNELS and prior.condition_size == (16, 16)
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    held = [line for line in lines if "val_nll" in line]
    assert held and held[-1]["val_sequences"] == 4 and held[-1]["val_nll"] > 0
    # rows: condition, 2 samples, reference, sample with it, original; one column per held-out face (4)
    grid = Image.open(tmp_path / "run" / "samples" / "step-2.png")
    assert grid.size == (4 * 18 + 2, 6 * 18 + 2)
    # the saved translator loads and reads line art with or without a reference
    loaded = vqstack.load_component(tmp_path / "run" / "prior")
    line_art = loaded.build_image_condition()(torch.zeros(1, 3, 16, 16))
    tokens = loaded.generate(2, image=with_reference(line_art), generator=torch.Generator().manual_seed(0))
    assert tokens.shape == (2, 16)


def test_held_out_faces_are_never_trained_on(inputs):
    recipe = load_recipe("translate_anime")
    train, held = recipe.split_held_out([0, 1, 2, 4, 5, 6], num_images=7, count=3)  # image 3 unreadable
    assert held == [3, 4, 5] and train == [0, 1, 2]  # token rows encoding images 4, 5, 6
    with pytest.raises(UsageError, match="--eval-images must be in"):
        recipe.split_held_out([0, 1], num_images=2, count=2)


def test_a_misspelt_condition_names_the_registered_ones(inputs, tmp_path):
    with pytest.raises(UsageError, match="Unknown condition 'lineartt'.*lineart"):
        run(inputs, tmp_path / "bad", "--condition", "lineartt")
    with pytest.raises(UsageError, match="--reference-dropout must be in"):
        run(inputs, tmp_path / "bad", "--reference-dropout", "1.5")


def test_token_rows_name_the_images_they_encode_when_one_is_unreadable(inputs, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for path in sorted((inputs / "images").glob("*.png"))[:10]:
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "003.png").write_bytes(b"not an image")
    reset_accelerate()
    load_recipe("translate_anime").main([
        "--tokenizer", str(inputs / "tokenizer"), "--data", str(folder), "--preset", "tiny", "--attributes", "",
        "--batch-size", "2", "--eval-images", "2", "--max-steps", "1", "--output-dir", str(tmp_path / "run")])
    tokens, info = load_token_dataset(tmp_path / "run" / "tokens")
    assert info["skipped_images"] == 1
    rows = source_rows(tokens, info, "tokens")
    assert rows == [0, 1, 2, 4, 5, 6, 7, 8, 9]
    # each token row is the tokenizer's code of the image it names
    tokenizer = vqstack.Tokenizer.from_pretrained(inputs / "tokenizer")
    images = ImageDataset(load_image_dataset(str(folder)), 16, random_flip=False)
    assert torch.equal(tokenizer.encode(images.pixels(4)[None]).flatten(), torch.tensor(tokens["tokens"][3]))
    # an older token set without rows is matched 0..n-1 only when nothing was skipped
    old = tokens.remove_columns("row")
    assert source_rows(old, {"skipped_images": 0}, "tokens") == list(range(9))
    with pytest.raises(Exception, match="encode them again"):
        source_rows(old, info, "tokens")


def test_training_pairs_draw_the_same_condition_for_the_same_sample_and_epoch(inputs):
    images = ImageDataset(load_image_dataset(str(inputs / "images")), 16, random_flip=False)
    condition = vqstack.build("condition", "lineart")
    pairs = ConditionedTokens(torch.zeros(6, 16, dtype=torch.long), images, range(6), condition, reference=True,
                              reference_dropout=0.5, seed=3)
    first = [pairs[i][2] for i in range(6)]
    assert all(c.shape == (1 + REFERENCE_CHANNELS, 16, 16) for c in first)
    assert all(torch.equal(a, pairs[i][2]) for i, a in enumerate(first))  # a worker or a resumed run: the same
    pairs.set_epoch(1)
    assert not all(torch.equal(a, pairs[i][2]) for i, a in enumerate(first))  # another epoch: other draws
    presence = torch.stack([c[-1].mean() for c in first])
    assert set(presence.tolist()) <= {-1.0, 1.0}
    for c in first:  # a row without a reference carries zeros in its RGB channels
        if c[-1].mean() < 0:
            assert c[1:4].abs().max() == 0


def test_the_reference_view_keeps_the_colours_and_moves_the_layout():
    torch.manual_seed(0)
    image = torch.zeros(3, 32, 32)
    image[0, :, :16] = 1.0  # red left half, green right half
    image[1, :, 16:] = 1.0
    image = image * 2 - 1
    views = [reference_view(image, torch.Generator().manual_seed(seed)) for seed in range(8)]
    assert torch.equal(views[0], reference_view(image, torch.Generator().manual_seed(0)))
    for view in views:  # the same two colours in about the same amounts (reflection keeps borders filled)
        assert view.shape == image.shape and view.min() >= -1 and view.max() <= 1
        assert abs(float(view[0].mean() - view[1].mean())) < 0.6
    assert max(float((v - image).abs().mean()) for v in views) > 0.3  # the layout moved


def test_with_reference_resizes_another_size_and_marks_presence():
    condition = torch.zeros(2, 1, 16, 16)
    stacked = with_reference(condition, torch.ones(1, 3, 40, 24), present=torch.tensor([True, False]))
    assert stacked.shape == (2, 1 + REFERENCE_CHANNELS, 16, 16)
    assert torch.allclose(stacked[0, 1:4], torch.ones(3, 16, 16)) and stacked[1, 1:4].abs().max() == 0
    assert stacked[0, 4].min() == 1 and stacked[1, 4].max() == -1
    assert torch.equal(with_reference(condition)[:, 4], -torch.ones(2, 16, 16))
    with pytest.raises(ValueError, match="reference must be RGB images"):
        with_reference(condition, torch.ones(3, 1, 16, 16))
