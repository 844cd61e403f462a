"""Every preset, trained briefly on real images, keeps its codebook alive.

A collapsed codebook (every patch mapped to one code) is the failure a new user meets first: the old ``cifar``
preset collapsed to a single code by step 3. The floor is a tenth of the codes that the held-out tokens could
reach at most (see USAGE_FLOOR); a collapse gives a handful. The presets' colour fidelity at a real budget is measured by
benchmarks/colour_ablation.py and published in docs/benchmarks.md (too slow for the suite). Without training: each
preset's token grid, recipes/configs/small-f4.yaml's 16x16 grid, and the small preset's FLOPs against base's.
"""
from __future__ import annotations

import json

import pytest
import torch

import vqstack
from helpers.recipes import ROOT, SHARED_DATA, load_recipe, reset_accelerate
from vqstack.data import ImageDataset, load_image_dataset
from vqstack.training.config import PRESETS, resolve_config

SMALL_F4 = ROOT / "recipes" / "configs" / "small-f4.yaml"

# preset -> (data folder, resolution, batch size, steps): small enough for 2 CPU cores, long enough to collapse.
# k-means initialisation needs a first batch with at least as many vectors as codes: base has 1024 codes and
# 8x8 tokens per 64px image, so 16 images.
BRIEF = {
    "tiny": ("anime-faces", 32, 16, 12),
    # 16 images of 8x8 tokens: the 1024 vectors k-means needs for 1024 codes; the first restarts come at step 8
    "small": ("anime-faces", 64, 16, 10),
    "cifar": ("cifar10", 32, 16, 5),  # the old preset had collapsed by step 3
    "base": ("anime-faces", 64, 16, 4),
}
# base is a GPU model (ch 128, about 0.6 images/s here): the test keeps its quantizer, losses and depth and narrows
# its width to 32 channels, so what it checks is the preset's codebook settings
NARROW = {"tokenizer": {"encoder": {"name": "conv", "kwargs": {"ch": 32}},
                        "decoder": {"name": "conv", "kwargs": {"ch": 32}}}}
OVERRIDES = {"base": NARROW}
# measured spread at these budgets, seeds 0-2: cifar 85-137 of 512 codes, tiny 134-180 of 256, small 670-707 of
# 1024 (81 at 6 steps, before its first restarts); a collapse gives a handful. 0.25 of 512 sat inside cifar's
# spread and failed on a seed, so the floor is 0.1.
USAGE_FLOOR = 0.1
HELD_OUT = 32


def held_out_images(data: str, resolution: int) -> torch.Tensor:
    images = load_image_dataset(data)
    tail = ImageDataset(images.select(range(len(images) - HELD_OUT, len(images))), resolution, random_flip=False)
    return torch.stack([tail[i]["pixel_values"] for i in range(len(tail))])


def test_every_preset_is_covered():
    assert set(BRIEF) == set(PRESETS)


def preset_tokenizer(preset: str, config_file=None) -> vqstack.Tokenizer:
    config = resolve_config(preset, config_file)["tokenizer"]
    return vqstack.Tokenizer.from_config({**config, "colour": None})  # whitening is measured on the data


# preset -> (resolution, token grid side, codes): small is base's layout (f = 8, 1024 codes) on the tiny net
GRIDS = {"tiny": (32, 8, 256), "small": (64, 8, 1024), "cifar": (32, 8, 512), "base": (64, 8, 1024)}


@pytest.mark.parametrize("preset", sorted(GRIDS))
def test_preset_token_grid(preset):
    resolution, side, codes = GRIDS[preset]
    tokenizer = preset_tokenizer(preset)
    assert tokenizer.encode(torch.zeros(2, 3, resolution, resolution)).shape == (2, side, side)
    assert tokenizer.quantizer.codebook_size == codes


def test_small_f4_config_gives_a_16x16_grid():
    """recipes/configs/small-f4.yaml: the small preset at f = 4, taming's ch_mult [1, 2, 4]."""
    tokenizer = preset_tokenizer("small", SMALL_F4)
    assert tokenizer.encoder.downsample == tokenizer.decoder.upsample == 4
    assert tokenizer.encode(torch.zeros(1, 3, 64, 64)).shape == (1, 16, 16)
    assert tokenizer.quantizer.codebook_size == 1024


def flops_per_image(module: torch.nn.Module, resolution: int) -> float:
    """Forward and backward FLOPs of one image through a tokenizer, counted by torch (not timed)."""
    from torch.utils.flop_counter import FlopCounterMode

    images = torch.zeros(1, 3, resolution, resolution, requires_grad=True)
    with FlopCounterMode(display=False) as counter:
        module(images).recon.sum().backward()
    return counter.get_total_flops()


def test_small_costs_at_most_a_tenth_of_base():
    """The point of the preset: 64 px at CPU cost. Measured: 5.7 GFLOPs per image vs base's 88."""
    small, base = flops_per_image(preset_tokenizer("small"), 64), flops_per_image(preset_tokenizer("base"), 64)
    assert 5.0e9 < small < 6.5e9 and small * 10 < base
    assert PRESETS["small"]["perceptual"]["kwargs"]["net"] == "alex"  # VGG16 would cost more than the tokenizer


@pytest.mark.slow
@pytest.mark.parametrize("preset", sorted(BRIEF))
def test_preset_keeps_its_codebook_alive_on_real_images(preset, tmp_path):
    folder, resolution, batch_size, steps = BRIEF[preset]
    data = SHARED_DATA / folder
    if not data.is_dir():
        pytest.skip(f"../shared/data/{folder} is absent")
    config = tmp_path / "small-eval.json"
    # the recipe's own final evaluation, kept small
    config.write_text(json.dumps({"eval_size": HELD_OUT, **OVERRIDES.get(preset, {})}))
    reset_accelerate()
    load_recipe("vqgan_anime").main([
        "--data", str(data), "--preset", preset, "--config", str(config), "--resolution", str(resolution), "--batch-size", str(batch_size),
        "--max-steps", str(steps), "--eval-every", str(steps), "--sample-every", str(steps),
        "--checkpoint-every", str(steps), "--num-workers", "0", "--output-dir", str(tmp_path / "run")])
    tokenizer = vqstack.Tokenizer.from_pretrained(tmp_path / "run" / "tokenizer")
    tokens = tokenizer.encode(held_out_images(str(data), resolution))
    reachable = min(tokenizer.quantizer.codebook_size, tokens.numel())
    used = tokens.unique().numel()
    log = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert used >= USAGE_FLOOR * reachable, (
        f"{preset}: {used} of {reachable} reachable codes in use after {steps} steps (log tail: {log[-1]})")
