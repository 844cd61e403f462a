"""benchmarks/pix2pix.py: a few steps on generated 32 px images train, save a generator that loads and translates,
and the same seed gives the same losses."""
import importlib.util
import json
from pathlib import Path

import torch

from helpers.recipes import write_image_folder

ROOT = Path(__file__).resolve().parents[1]


def load_pix2pix_module():
    spec = importlib.util.spec_from_file_location("pix2pix_baseline", ROOT / "benchmarks" / "pix2pix.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TINY = ["--resolution", "32", "--condition", "lineart", "--eval-images", "2", "--batch-size", "4", "--threads", "1",
        "--width", "8", "--d-width", "8", "--max-steps", "3", "--log-every", "1", "--eval-every", "2",
        "--save-every", "2", "--time-budget", "10m"]
LOSSES = ("g_l1", "g_gan", "d_loss", "d_real", "d_fake")


def losses(output: Path) -> list[dict]:
    lines = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    return [{key: line[key] for key in LOSSES} for line in lines if "g_l1" in line]


def test_train_save_load_translate_and_determinism(tmp_path):
    pix2pix = load_pix2pix_module()
    data = write_image_folder(tmp_path / "images", count=12, size=32)
    first = pix2pix.main(["train", "--data", str(data), "--output-dir", str(tmp_path / "a"), "--seed", "0", *TINY])
    assert first["steps"] == 3 and first["stopped"] == "max_steps"
    assert first["generator_params"] > 0 and 0 <= first["eval_l1"] < 2

    lines = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines if "g_l1" in line] == [1, 2, 3]
    assert [line["step"] for line in lines if "eval_l1" in line] == [2, 3]  # every 2 steps, and at the end
    assert all(line["images_per_sec"] > 0 and line["elapsed_s"] > 0 for line in lines if "g_l1" in line)

    generator, config = pix2pix.load_pix2pix(tmp_path / "a" / "pix2pix")
    assert not generator.training and config["steps"] == 3 and config["resolution"] == 32
    assert config["generator"]["depth"] == 5 and config["condition"]["name"] == "lineart"
    assert not (tmp_path / "a" / "pix2pix.tmp").exists() and (tmp_path / "a" / "samples.png").is_file()

    conditions = torch.rand(5, 1, 32, 32) * 2 - 1
    out = pix2pix.translate(generator, conditions, dropout=True, seed=1)
    assert out.shape == (5, 3, 32, 32) and out.min() >= -1 and out.max() <= 1
    assert torch.equal(out, pix2pix.translate(generator, conditions, dropout=True, seed=1))  # seeded masks
    plain = pix2pix.translate(generator, conditions, dropout=False)
    assert torch.equal(plain, pix2pix.translate(generator, conditions, dropout=False))
    assert not torch.equal(out, plain)  # dropout is on at test time unless asked otherwise
    assert not generator.training  # translate leaves the mode as it found it

    pix2pix.main(["train", "--data", str(data), "--output-dir", str(tmp_path / "b"), "--seed", "0", *TINY])
    assert losses(tmp_path / "a") == losses(tmp_path / "b")
