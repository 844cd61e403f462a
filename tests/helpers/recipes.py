"""Running the recipes in tests: small image folders and isolated accelerate state."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = ROOT.parent / "shared" / "data"


def load_recipe(name: str):
    """Import recipes/<name>.py as a module (recipes are scripts, not a package)."""
    path = ROOT / "recipes" / f"{name}.py"
    sys.path.insert(0, str(path.parent))  # recipes may import their siblings
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_image_folder(folder: Path, count: int = 24, size: int = 40, seed: int = 0) -> Path:
    """``count`` smooth random RGB images (PNG) in ``folder``: an ``imagefolder`` data set."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        low = rng.uniform(0, 255, size=(4, 4, 3)).astype(np.uint8)
        Image.fromarray(low).resize((size, size), Image.BILINEAR).save(folder / f"{i:03d}.png")
    return folder


def reset_accelerate() -> None:
    """Forget accelerate's process-wide state, so the next Accelerator starts clean."""
    from accelerate.state import AcceleratorState, GradientState, PartialState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    PartialState._reset_state()


# the flagship recipe at its smallest: tiny preset, batch 4, every step logged, nothing periodic within a test's run
TINY_VQGAN = ["--preset", "tiny", "--num-workers", "0", "--batch-size", "4", "--log-every", "1", "--eval-every",
              "100", "--sample-every", "100", "--checkpoint-every", "100", "--checkpoints-to-keep", "0"]


def run_tiny_vqgan(images, output, *more):
    """recipes/vqgan_anime.py's ``main`` on ``images`` at TINY_VQGAN, writing to ``output``; ``more`` options last."""
    reset_accelerate()
    return load_recipe("vqgan_anime").main([*TINY_VQGAN, "--data", str(images), "--output-dir", str(output),
                                            *map(str, more)])


TINY_NET = {"ch": 16, "ch_mult": [1, 2, 2], "num_res_blocks": 1, "attn_resolutions": [], "resolution": 16}


def tiny_tokenizer_config(quantizer=None) -> dict:
    """A 16x16 -> 4x4 tokenizer with 32 codes: random weights are enough to test stage 2's plumbing."""
    return {"encoder": {"name": "conv", "kwargs": {**TINY_NET, "out_channels": 16}},
            "quantizer": quantizer or {"name": "vq", "kwargs": {"dim": 8, "codebook_size": 32}},
            "decoder": {"name": "conv", "kwargs": {**TINY_NET, "in_channels": 16}}}


def write_tagged_folder(folder: Path, count: int = 24, hair=("blue", "red", "blonde", None)) -> Path:
    """A 16x16 image folder whose metadata.jsonl tags hair (cycling through ``hair``) and, on 2 of 3, green eyes."""
    import json

    write_image_folder(folder, count=count, size=16)
    with (folder / "metadata.jsonl").open("w") as f:
        for i in range(count):
            f.write(json.dumps({"file_name": f"{i:03d}.png", "hair": hair[i % len(hair)],
                                "eyes": "green" if i % 3 else None}) + "\n")
    return folder


def write_stage2_inputs(root: Path) -> Path:
    """``root/images`` (write_tagged_folder) and ``root/tokenizer``, a seeded random tiny tokenizer: what the prior
    recipe needs."""
    import torch

    import vqstack

    write_tagged_folder(root / "images")
    torch.manual_seed(0)
    vqstack.Tokenizer.from_config(tiny_tokenizer_config()).save_pretrained(root / "tokenizer")
    return root
