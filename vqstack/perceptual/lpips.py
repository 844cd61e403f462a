"""LPIPS (Zhang et al. 2018) as a frozen perceptual loss, wrapping the ``lpips`` package.

The calibrated linear layers ship inside the ``lpips`` package. The ImageNet backbone (VGG16 by default, as in
VQGAN's perceptual loss) is torchvision's, loaded the standard way from the torch hub cache
(``$TORCH_HOME/hub/checkpoints/vgg16-397923af.pth``) or from ``backbone_weights=PATH``. vqstack never downloads
it: when it is missing the constructor fails at once and says where to put it.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torch import nn

NETS = ("vgg", "alex", "squeeze")


class FrozenPerceptualLoss(nn.Module):
    """Base of the perceptual losses: parameters never train and the module always stays in eval mode.

    Gradients still flow to the *inputs* (the reconstructions), which is what a perceptual loss is for."""

    def freeze(self) -> None:
        for p in self.parameters():
            p.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True):
        # A training loop calls model.train() on everything it owns; dropout in the linear layers (lpips) must
        # stay off or the loss becomes noisy, so this module ignores the request.
        return super().train(False)

    @staticmethod
    def check_inputs(x: torch.Tensor, y: torch.Tensor) -> None:
        if x.shape != y.shape or x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"A perceptual loss compares two image batches of the same shape (B, 3, H, W) in "
                             f"[-1, 1]; got {tuple(x.shape)} and {tuple(y.shape)}.")


def torchvision_weights(net: str):
    """The torchvision weights enum entry whose checkpoint the lpips backbone ``net`` uses."""
    from torchvision import models

    return {"vgg": models.VGG16_Weights.IMAGENET1K_V1, "alex": models.AlexNet_Weights.IMAGENET1K_V1,
            "squeeze": models.SqueezeNet1_1_Weights.IMAGENET1K_V1}[net]


def default_backbone_path(net: str) -> Path:
    """Where torchvision caches the backbone: ``torch.hub.get_dir()/checkpoints/<file name of the URL>``."""
    url = torchvision_weights(net).url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def find_backbone(net: str, backbone_weights: str | os.PathLike | None) -> Path:
    """The backbone checkpoint to load, or a FileNotFoundError that explains how to provide it."""
    url = torchvision_weights(net).url
    name = os.path.basename(url)
    if backbone_weights is not None:
        path = Path(backbone_weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"backbone_weights={str(backbone_weights)!r} does not exist; it must be "
                                    f"torchvision's ImageNet checkpoint {name} ({url}).")
        return path
    path = default_backbone_path(net)
    if not path.is_file():
        raise FileNotFoundError(
            f"LPIPS(net={net!r}) needs torchvision's ImageNet backbone weights {name}, and vqstack never downloads "
            f"at run time. Not found: {path} (the torch hub cache; TORCH_HOME moves it). Either download {url} "
            f"elsewhere and copy it to that path, or pass backbone_weights='/path/to/{name}'. "
            f"pretrained=False builds a random backbone for tests only: its distances are not LPIPS."
        )
    return path


def load_backbone(trunk: nn.Module, path: Path, net: str) -> None:
    """Load torchvision's ImageNet checkpoint into lpips' sliced trunk.

    lpips splits ``model.features`` into ``slice1..sliceN`` but keeps each layer's index as its name, so
    ``slice2.5.weight`` is torchvision's ``features.5.weight``; the classifier in the checkpoint is not needed."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    mapped, missing = {}, []
    for key in trunk.state_dict():
        _slice, rest = key.split(".", 1)
        source = f"features.{rest}"
        if source in state:
            mapped[key] = state[source]
        else:
            missing.append(source)
    if missing:
        raise ValueError(f"{path} is not torchvision's ImageNet {net} checkpoint ({torchvision_weights(net).url}): "
                         f"it lacks {missing[:3]}{' ...' if len(missing) > 3 else ''}.")
    try:
        trunk.load_state_dict(mapped, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{path} does not fit the lpips {net} backbone: {err}") from err


class LPIPS(FrozenPerceptualLoss):
    """Learned perceptual distance between image batches in [-1, 1] -> (B,), frozen."""

    def __init__(
        self,
        net: str = "vgg",  # backbone: "vgg" (VQGAN's perceptual loss), "alex" (the usual LPIPS metric), "squeeze"
        pretrained: bool = True,  # ImageNet backbone; False = random backbone, for tests only (not a metric)
        backbone_weights: str | None = None,  # path to torchvision's checkpoint instead of the torch hub cache
        version: str = "0.1",  # lpips' linear-layer version ("0.1", the current one, or "0.0")
    ):
        super().__init__()
        if net not in NETS:
            raise ValueError(f"Unknown LPIPS net {net!r}; choose one of {', '.join(NETS)}.")
        if not pretrained and backbone_weights is not None:
            raise ValueError("backbone_weights is given but pretrained=False; drop one of them.")
        # Find the weights before building anything, so a missing file fails fast and nothing is fetched.
        path = find_backbone(net, backbone_weights) if pretrained else None

        import lpips

        with warnings.catch_warnings():  # lpips calls torchvision's deprecated `pretrained=` argument
            warnings.simplefilter("ignore", UserWarning)
            # pnet_rand=True: lpips builds the trunk without asking torchvision to download anything; the
            # calibrated linear layers (lpips' pretrained=True) come from files inside the lpips package.
            self.model = lpips.LPIPS(net=net, version=version, pretrained=True, pnet_rand=True, verbose=False)
        if path is not None:
            load_backbone(self.model.net, path, net)
        self.net, self.pretrained = net, pretrained
        self.freeze()

    @classmethod
    def example_kwargs(cls) -> dict:
        """A random backbone: runs offline, for shape/gradient checks only (not a metric)."""
        return {"pretrained": False}

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.check_inputs(x, y)
        return self.model(x, y).reshape(x.shape[0])
