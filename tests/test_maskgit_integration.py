"""The maskgit prior (plugins/vqstack-maskgit) by name through vqstack's own entry points: the prior recipe,
Pipeline sampling, `vqstack inpaint` and `vqstack outpaint`. Skipped when the plugin is not installed."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from helpers.recipes import load_recipe, reset_accelerate, write_stage2_inputs
from vqstack.cli import main as cli_main
from vqstack import Pipeline

pytest.importorskip("vqstack_maskgit", reason="plugins/vqstack-maskgit is not installed")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A random tiny tokenizer and a maskgit prior trained 3 steps by the prior recipe on tagged faces."""
    root = write_stage2_inputs(tmp_path_factory.mktemp("maskgit"))
    reset_accelerate()
    result = load_recipe("prior_anime").main([
        "--prior", "maskgit", "--tokenizer", str(root / "tokenizer"), "--data", str(root / "images"),
        "--preset", "tiny", "--batch-size", "8", "--max-steps", "3", "--log-every", "1", "--eval-every", "3",
        "--sample-every", "3", "--checkpoint-every", "3", "--output-dir", str(root / "run")])
    return root, result


def test_the_prior_recipe_trains_maskgit_by_name(trained):
    root, result = trained
    assert type(result["prior"]).__name__ == "MaskGITPrior" and result["state"].step == 3
    config = json.loads((root / "run" / "prior" / "config.json").read_text())
    assert config["name"] == "maskgit"
    records = [json.loads(line) for line in (root / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any("val_masked_ce" in r for r in records) and not any("val_nll" in r for r in records), \
        "a masked prior's validation loss is not called an NLL"
    assert (root / "run" / "samples" / "step-3.png").is_file()


def test_pipeline_samples_with_maskgit_and_its_steps(trained):
    root, _ = trained
    pipe = Pipeline.from_pretrained(root / "tokenizer", root / "run" / "prior")
    images = pipe(2, labels="blue hair", cfg_scale=2.0, seed=0, steps=4)
    assert len(images) == 2 and images[0].size == (16, 16)


def test_maskgit_inpaint_and_outpaint_from_the_command_line(trained, tmp_path, capsys):
    """A 48x64 face, not the model's 16x16: both commands answer at the face's own size and keep its pixels."""
    root, _ = trained
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 48, 3), dtype=np.uint8))
    image.save(tmp_path / "face.png")
    mask = np.zeros((64, 48), dtype=np.uint8)
    mask[:20] = 255  # the top token row (16 pixels at this scale) and a bit of the next
    Image.fromarray(mask).save(tmp_path / "mask.png")
    stages = ["--tokenizer", str(root / "tokenizer"), "--prior", str(root / "run" / "prior"), "--device", "cpu"]
    assert cli_main(["inpaint", *stages, "--image", str(tmp_path / "face.png"), "--mask", str(tmp_path / "mask.png"),
                     "--steps", "4", "--out", str(tmp_path / "inpainted.png")]) == 0
    repaired = np.asarray(Image.open(tmp_path / "inpainted.png"))
    assert repaired.shape == (64, 48, 3)
    assert np.array_equal(repaired[28:], np.asarray(image)[28:]), "beyond the 8-pixel feather: the input's rows"
    assert cli_main(["outpaint", *stages, "--image", str(tmp_path / "face.png"), "--extend", "left=2,right=2",
                     "--out", str(tmp_path / "wide.png")]) == 0
    with Image.open(tmp_path / "wide.png") as wide:
        assert wide.size == (48 + 2 * 2 * 12, 64)  # 12-pixel-wide cells at the face's scale
        assert np.array_equal(np.asarray(wide)[:, 24 + 8:24 + 48 - 8], np.asarray(image)[:, 8:40])
    # best-of-N ranks fills by raster-order likelihood: an ar-only feature, refused with the alternative named
    assert cli_main(["inpaint", *stages, "--image", str(tmp_path / "face.png"), "--mask", str(tmp_path / "mask.png"),
                     "--candidates", "4", "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "use candidates=1" in err[0]


def test_maskgit_repairs_a_tiny_image_at_its_size(trained):
    root, _ = trained
    pipe = Pipeline.from_pretrained(root / "tokenizer", root / "run" / "prior")
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (3, 5, 3), dtype=np.uint8))
    mask = Image.new("L", (5, 3))
    mask.putpixel((0, 0), 255)
    repaired = np.asarray(pipe.inpaint(image, mask, seed=0, steps=2))
    assert repaired.shape == (3, 5, 3)
    assert np.array_equal(repaired[:, 3:], np.asarray(image)[:, 3:]), "beyond the 2-pixel feather"
    grown = pipe.outpaint(image, {"right": 2, "bottom": 1}, seed=0, steps=2)
    assert grown.size == (5 + 3, 3 + 1)  # 2 x 1.25 = 2.5 -> 3 columns, 0.75 -> 1 row


def test_nll_of_a_masked_prior_is_refused_with_the_alternative(trained):
    from vqstack.evaluation import token_nll

    root, result = trained
    with pytest.raises(ValueError, match="nll is the next-token likelihood .* fd-vgg instead"):
        token_nll(result["prior"], torch.zeros(2, 16, dtype=torch.long))
