"""benchmarks/equal_time.py: the goals against the anchor, and the anchor itself (taming-transformers' modules behind
vqstack's interfaces; skipped where the optional ``taming-transformers-rom1504`` is not installed)."""
from __future__ import annotations

import importlib.util
import sys

import pytest
import torch

import vqstack
from helpers.recipes import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_goals_against_the_anchor():
    equal_time = load("equal_time")
    anchor = {"psnr": 18.0, "stlpips": 0.40, "usage": 0.3}
    close = equal_time.goals({"psnr": 20.4, "stlpips": 0.25, "usage": 0.95, "hair_kept": 0.92,
                              "hair_worst_kept": 0.79}, anchor)
    assert close["psnr_gain_db"] == 2.4 and close["stlpips_ratio"] == 0.625
    assert close["met"] == {"psnr": False, "stlpips": False, "usage": True, "hair": True, "hair_worst_colour": False}
    far = equal_time.goals({"psnr": 20.5, "stlpips": 0.24, "usage": 0.9}, anchor)
    assert far["met"] == {"psnr": True, "stlpips": True, "usage": True}  # no hair numbers, no hair goals


def test_every_entry_is_a_valid_config_on_the_small_preset():
    equal_time = load("equal_time")
    from vqstack.training.config import check_keys

    for name, (config, options) in equal_time.ENTRIES.items():
        check_keys(config)
        assert set(options) <= {"--mixed-precision", "bf16", "no", "--channels-last"}, name


@pytest.fixture
def anchor():
    pytest.importorskip("taming.modules.vqvae.quantize", reason="optional: pip install --no-deps "
                                                               "taming-transformers-rom1504")
    module = load("taming_anchor")
    module.register()
    yield module
    vqstack.unregister_plugin("taming-anchor")


def test_the_anchor_is_tamings_model_in_a_vqstack_tokenizer(anchor):
    from taming.modules.vqvae.quantize import VectorQuantizer2

    parts = anchor.TAMING_CONFIG["tokenizer"]
    kwargs = {**anchor.TAMING_NET, "resolution": 64}
    tokenizer = vqstack.Tokenizer.from_config({
        "encoder": {"name": "taming", "kwargs": kwargs}, "decoder": {"name": "taming", "kwargs": kwargs},
        "quantizer": parts["quantizer"], "colour": None})
    images = torch.rand(2, 3, 64, 64) * 2 - 1
    out = tokenizer(images)
    assert out.recon.shape == images.shape and out.indices.shape == (2, 8, 8)  # f = 8 at 64 px
    (out.recon.abs().mean() + out.loss).backward()
    assert tokenizer.encoder.net.conv_in.weight.grad is not None

    # the quantizer is VectorQuantizer2 itself: same indices and loss as calling it directly
    quantizer = tokenizer.quantizer
    z = torch.randn(2, 64, 8, 8)
    reference = VectorQuantizer2(1024, 64, beta=0.25, sane_index_shape=True)
    reference.load_state_dict(quantizer.vq.state_dict())
    z_q, loss, (_, _, indices) = reference(z)
    ours = quantizer(z)
    assert torch.equal(ours.indices, indices) and torch.allclose(ours.loss, loss)
    assert torch.allclose(quantizer.indices_to_codes(ours.indices), z_q, atol=1e-6)  # z_q is z + (e - z)
    assert 0 < float(ours.metrics["usage"]) <= 1


def test_measure_scores_a_trained_tokenizer_on_the_held_out_tail(tmp_path):
    """--measure trains nothing and scores a tokenizer folder on the last --holdout faces, as the entries are."""
    from helpers.recipes import tiny_tokenizer_config, write_image_folder
    from vqstack.evaluation import evaluate_tokenizer

    equal_time = load("equal_time")
    data = write_image_folder(tmp_path / "images", count=6, size=64)
    torch.manual_seed(0)
    vqstack.Tokenizer.from_config(tiny_tokenizer_config()).save_pretrained(tmp_path / "tokenizer")
    [row] = equal_time.main(["--measure", str(tmp_path / "tokenizer"), "--data", str(data), "--holdout", "2",
                             "--attribute", "", "--json", str(tmp_path / "row.json")])
    tokenizer = vqstack.Tokenizer.from_pretrained(tmp_path / "tokenizer")
    tail = equal_time.held_out(type("Args", (), {"data": str(data), "holdout": 2})())
    assert tail.shape == (2, 3, 64, 64)
    expected = evaluate_tokenizer(tokenizer, [tail], ["psnr"])["psnr"]
    assert row["holdout"] == 2 and row["psnr"] == pytest.approx(expected)
    assert not (tmp_path / "small").exists()  # nothing trained
