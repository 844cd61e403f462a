"""benchmarks/quality_time.py end to end on tiny random models (the code paths, not a measurement): every setting is
timed at every batch and scored, the same seeds give the same samples, the regime summary names the faster prior of
those within 5 % of the best Fréchet distance, and the plot is drawn. The features are a stand-in (each image's mean
colour, tests/test_eval_cli.py), not VGG16: the benchmark's own FD-VGG would cost minutes here."""
import json
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

import vqstack
from helpers.recipes import tiny_tokenizer_config
from test_eval_cli import MeanColourPlugin

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import quality_time  # noqa: E402


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("quality-time")
    torch.manual_seed(0)
    vqstack.Tokenizer.from_config(tiny_tokenizer_config()).save_pretrained(root / "tokenizer")
    for name in ("ar", "maskgit"):
        prior = vqstack.build("prior", name, vocab_size=32, seq_len=16, dim=32, depth=1, heads=2)
        torch.nn.init.normal_(prior.head.weight, std=1.0)
        vqstack.save_component(prior, root / name)
    (root / "faces").mkdir()
    for i in range(6):
        colour = tuple(int(c) for c in torch.randint(0, 255, (3,), generator=torch.Generator().manual_seed(i)))
        Image.new("RGB", (16, 16), colour).save(root / "faces" / f"{i}.png")
    return root


@pytest.fixture
def mean_colour(fresh_plugins):
    vqstack.register_plugin(MeanColourPlugin(), name="test-mean-colour")


def test_quality_time_end_to_end(folders, tmp_path, mean_colour):
    out = tmp_path / "result.json"
    result = quality_time.main([
        "--tokenizer", str(folders / "tokenizer"), "--ar", str(folders / "ar"), "--maskgit", str(folders / "maskgit"),
        "--data", str(folders / "faces"), "--n", "4", "--reference", "6", "--batches", "1,2", "--reps", "1",
        "--maskgit-steps", "1,4", "--temperatures", "0.5,1.0", "--features", "mean-colour", "--plot", str(tmp_path / "plot.png"),
        "--json-out", str(out)])
    assert json.loads(out.read_text()) == result
    settings = [(r["prior"], r.get("temperature", r.get("steps"))) for r in result["rows"]]
    assert settings == [("ar", 0.5), ("ar", 1.0), ("maskgit", 1), ("maskgit", 4)]
    for row in result["rows"]:
        assert set(row["seconds_per_image"]) == {"1", "2"} and all(t > 0 for t in row["seconds_per_image"].values())
        assert row["fd_vgg"] > 0 and row["token_nll"] > 0
    best = min(r["fd_vgg"] for r in result["rows"])
    for batch, regime in result["regimes"].items():
        assert regime["fd_vgg_within"] == round(best * 1.05, 2)
        times = {k: v for k, v in regime["seconds_per_image"].items() if v is not None}
        assert regime["faster"] == min(times, key=times.get)
    assert result["reference"]["faces"] == 6
    assert Image.open(tmp_path / "plot.png").size == (2 * 360 + 20, 2 * 300 + 50)


def test_the_same_seeds_give_the_same_samples(folders):
    prior = vqstack.load_component(folders / "maskgit")
    first = quality_time.sample_tokens(prior, {"prior": "maskgit", "steps": 4}, 5, chunk=2)
    assert torch.equal(first, quality_time.sample_tokens(prior, {"prior": "maskgit", "steps": 4}, 5, chunk=2))
    assert first.shape == (5, 16)
