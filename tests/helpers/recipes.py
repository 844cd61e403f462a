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
