"""Shift-tolerant LPIPS (ST-LPIPS; Ghildyal & Liu, ECCV 2022) as a frozen perceptual loss.

Wraps the ``stlpips-pytorch`` package (import name ``stlpips_pytorch``), whose wheel ships the ImageNet-trained,
anti-aliased VGG16 and AlexNet backbones together with their calibrated linear layers
(``stlpips_pytorch/weights/vST0.0/{vgg,alex}_shift_tolerant.pth``), so it works offline. Report it as ST-LPIPS:
its values are not comparable with LPIPS.

The default backbone is VGG16, the usual choice for a VQGAN perceptual loss; AlexNet is much cheaper.
"""
from __future__ import annotations

import importlib.util
import sys
import types
import warnings
from pathlib import Path

import torch

from .lpips import FrozenPerceptualLoss

NETS = ("vgg", "alex")
# Smallest image side each backbone accepts: its reflection padding needs the deepest feature maps >= 3 pixels.
MIN_SIZE = {"vgg": 18, "alex": 21}

# Imported at the top of stlpips_pytorch's modules but only used by debugging helpers (print_network and
# commented-out breakpoints), and not declared by its wheel.
_UNDECLARED_IMPORTS = {"torchsummary": "summary", "IPython": "embed"}


def _unavailable(*args, **kwargs):
    raise RuntimeError("stlpips_pytorch debugging helper unavailable: install torchsummary / IPython to use it.")


def import_stlpips() -> types.ModuleType:
    """Import ``stlpips_pytorch.stlpips`` without requiring its two undeclared debugging-only dependencies.

    When ``torchsummary`` or ``IPython`` is not installed, an inert stand-in satisfies that one import while
    stlpips_pytorch loads and is removed from ``sys.modules`` right after, so the rest of the process never sees a
    fake IPython. Installed real packages are used as they are."""
    if "stlpips_pytorch.stlpips" in sys.modules:
        return sys.modules["stlpips_pytorch.stlpips"]
    stand_ins = []
    for name, attr in _UNDECLARED_IMPORTS.items():
        if name not in sys.modules and importlib.util.find_spec(name) is None:
            module = types.ModuleType(name, f"vqstack stand-in while importing stlpips_pytorch (no {name})")
            setattr(module, attr, _unavailable)
            sys.modules[name] = module
            stand_ins.append(name)
    try:
        from stlpips_pytorch import stlpips
    finally:
        for name in stand_ins:
            sys.modules.pop(name, None)
    return stlpips


def weights_path(stlpips_module: types.ModuleType, net: str) -> Path:
    """The bundled checkpoint, found the way stlpips_pytorch finds it (next to its ``stlpips.py``)."""
    path = Path(stlpips_module.__file__).parent / "weights" / "vST0.0" / f"{net}_shift_tolerant.pth"
    if not path.is_file():
        raise FileNotFoundError(f"The stlpips-pytorch installation lacks its bundled weights {path}; reinstall it "
                                f"with `pip install --force-reinstall stlpips-pytorch`.")
    return path


class STLPIPS(FrozenPerceptualLoss):
    """Shift-tolerant perceptual distance between image batches in [-1, 1] -> (B,), frozen.

    Images need at least 18 (vgg) or 21 (alex) pixels a side."""

    def __init__(self, net: str = "vgg"):  # net: "vgg" (VGG16, the VQGAN-style loss) or "alex" (faster)
        super().__init__()
        if net not in NETS:
            raise ValueError(f"Unknown ST-LPIPS net {net!r}; choose one of {', '.join(NETS)}.")
        stlpips = import_stlpips()
        path = weights_path(stlpips, net)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            # pretrained=False: build only; we load the bundled file ourselves below, strictly (the package
            # loads with strict=False, which would hide a mismatching checkpoint).
            self.model = stlpips.LPIPS(pretrained=False, net=net, variant="shift_tolerant", verbose=False)
        state = torch.load(path, map_location="cpu", weights_only=True)
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        # The checkpoint stores the linear layers as lin0..lin4; `lins.i` are the same modules under a second name.
        missing = [key for key in missing if not key.startswith("lins.")]
        if missing or unexpected:
            raise RuntimeError(f"{path} does not match the ST-LPIPS {net} network: missing {missing[:3]}, "
                               f"unexpected {unexpected[:3]}.")
        self.net = net
        self.freeze()

    @classmethod
    def example_kwargs(cls) -> dict:
        """The AlexNet variant: real weights, but 50x cheaper to build than VGG16."""
        return {"net": "alex"}

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.check_inputs(x, y)
        if min(x.shape[-2:]) < MIN_SIZE[self.net]:
            raise ValueError(f"ST-LPIPS ({self.net}) needs images of at least {MIN_SIZE[self.net]} pixels a side (its "
                             f"reflection padding fails on smaller feature maps), got {tuple(x.shape[-2:])}.")
        return self.model(x, y).reshape(x.shape[0])
