"""Feature networks for Fréchet distances and k-NN precision/recall: the ``features`` registry kind.

A feature network maps images (B, 3, H, W) in [-1, 1] to features (B, num_features) float; it resizes and
normalises inside, as its training expects, so any image size goes in. It is frozen and always in eval mode, and says
in ``description`` which network and weights it is (evaluation reports record it).

Built-ins, registered (by ``vqstack.evaluation``'s hook) through the same hook a plugin uses:

- ``vgg16-stlpips``: the ImageNet-trained, anti-aliased VGG16 that ships inside the ``stlpips-pytorch`` wheel
  (offline). Features: relu5_3 (its deepest layer), global-average-pooled to 512, of the image resized to 224x224
  and ImageNet-normalised. A Fréchet distance on them is "FD-VGG": not FID, not comparable with published values.
- ``inception``: torch-fidelity's InceptionV3 (the TensorFlow FID network) through torchmetrics, pool3 features
  (2048). Its weights come from the torch hub cache or ``weights=PATH`` and are never downloaded.

The heavy packages (torchmetrics, stlpips) are imported only when a network is built.
"""
from __future__ import annotations

import functools
import io
import pickle

import torch
import torch.nn.functional as F
from torch import nn

from .weights import inception_weights


class FeatureNetwork(nn.Module):
    """Base of the feature networks: frozen, always in eval mode. Subclasses set ``num_features`` and
    ``description`` and implement ``forward(images) -> (B, num_features)``."""

    num_features: int
    description: str

    def freeze(self) -> None:
        """Call at the end of ``__init__``: no parameter trains (eval mode is kept by ``train`` below)."""
        self.requires_grad_(False).eval()

    def train(self, mode: bool = True):
        # a metric's features must not depend on whether a training loop last called .train() on everything
        return super().train(False)


class VGG16STLPIPSFeatures(FeatureNetwork):
    """ST-LPIPS's ImageNet VGG16 (stlpips-pytorch), relu5_3 global-average-pooled: (B, 512)."""

    num_features = 512

    def __init__(self, size: int = 224):  # side the images are resized to: VGG16's ImageNet input size
        super().__init__()
        if isinstance(size, bool) or not isinstance(size, int) or size < 32:
            raise ValueError(f"size must be an int >= 32 (VGG16 halves it 4 times), got {size!r}.")
        from ..perceptual.stlpips import import_stlpips, weights_path

        stlpips = import_stlpips()
        from stlpips_pytorch import invariant_networks

        state = torch.load(weights_path(stlpips, "vgg"), map_location="cpu", weights_only=True)
        # Built on the meta device: stlpips builds all of VGG16, classifier included, and random-initialising its
        # 100M unused parameters would take seconds; every tensor of the trunk then comes from the checkpoint.
        with torch.device("meta"):
            trunk = invariant_networks.vggnet(variant="shift_tolerant", requires_grad=False)
        trunk.load_state_dict({k[len("net."):]: v for k, v in state.items() if k.startswith("net.")},
                              strict=True, assign=True)
        self.trunk = trunk
        # LPIPS' scaling layer: ImageNet's mean and std written for [-1, 1] inputs, as the backbone was trained
        self.register_buffer("shift", state["scaling_layer.shift"].reshape(1, 3, 1, 1))
        self.register_buffer("scale", state["scaling_layer.scale"].reshape(1, 3, 1, 1))
        self.size = size
        self.description = (f"ST-LPIPS VGG16 (ImageNet, stlpips-pytorch weights), relu5_3 global average pool, "
                            f"512-d, images resized to {size}x{size} (bilinear, antialiased), ImageNet-normalised")
        self.freeze()

    @classmethod
    def example_kwargs(cls) -> dict:
        """Small inputs for fast conformance checks (the real weights, at a size no metric uses)."""
        return {"size": 32}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(images.float(), size=(self.size, self.size), mode="bilinear", align_corners=False,
                          antialias=True)
        return self.trunk((x - self.shift) / self.scale).relu5_3.mean((2, 3))


@functools.cache
def _random_inception_class() -> type:
    """NoTrainInceptionV3 whose ``load_state_dict`` loads nothing from an empty state (and is strict otherwise).
    Made on first use, once: torchmetrics takes seconds to import."""
    from torchmetrics.image.fid import NoTrainInceptionV3

    class RandomInceptionV3(NoTrainInceptionV3):
        def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
            return super().load_state_dict(state_dict, strict=strict and bool(state_dict), assign=assign)

    return RandomInceptionV3


def _random_inception(name: str, features_list: list[str]) -> nn.Module:
    """torch-fidelity's InceptionV3 (through torchmetrics) left at its random initialisation: a test stand-in. Its
    constructor always loads a state dict (downloading one when given no path); it gets an empty one from memory."""
    empty = io.BytesIO()
    torch.save({}, empty)
    empty.seek(0)  # torch.load reads file objects as well as paths
    return _random_inception_class()(name=name, features_list=features_list, feature_extractor_weights_path=empty)


class InceptionFeatures(FeatureNetwork):
    """The FID network: torch-fidelity's InceptionV3 through torchmetrics, pool3 features (B, 2048).

    Images are rounded to 8 bits (what torch-fidelity expects; rounding, not torchmetrics' truncating ``normalize``,
    so an image read from a file gets back its exact pixels), then resized to 299 inside the network."""

    num_features = 2048

    def __init__(self, weights: str | None = None,  # checkpoint path instead of the torch hub cache
                 pretrained: bool = True):  # False: random weights (and 75x75 inputs), a test stand-in, not FID
        super().__init__()
        if not pretrained and weights is not None:
            raise ValueError("weights is given but pretrained=False; drop one of them.")
        path = inception_weights(weights) if pretrained else None  # before building: nothing may download
        if path is not None:  # torch-fidelity torch.load()s it with weights_only=False: accept only tensors
            from ..core.serialization import load_pickled_state

            load_pickled_state(path)
        from torchmetrics.image.fid import NoTrainInceptionV3

        options = {"name": "inception-v3-compat", "features_list": [str(self.num_features)]}
        try:
            self.net = (NoTrainInceptionV3(**options, feature_extractor_weights_path=str(path)) if pretrained
                        else _random_inception(**options))
        except (RuntimeError, OSError, ValueError, pickle.UnpicklingError) as err:  # not this checkpoint
            first_line = (str(err).strip().splitlines() or [""])[0].rstrip(":")
            raise ValueError(f"{path} is not torch-fidelity's InceptionV3 FID checkpoint ({type(err).__name__}: "
                             f"{first_line}).") from err
        if not pretrained:  # a stand-in needs no FID input size: the smallest InceptionV3 takes keeps checks fast
            self.net.INPUT_IMAGE_SIZE = 75
        self.description = (f"InceptionV3 pool3, 2048-d (torch-fidelity's TF-FID port via torchmetrics), weights {path}"
                            if pretrained else "InceptionV3 with RANDOM weights at 75x75: a test stand-in, not FID")
        self.freeze()

    @classmethod
    def example_kwargs(cls) -> dict:
        """Random weights: builds offline, for shape checks only (not FID)."""
        return {"pretrained": False}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pixels = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return self.net(pixels)


class SharedFeatures(nn.Module):
    """One feature network fed to several metrics: the features of the batch seen last are reused, so FD and
    precision/recall on the same images run the network once. Keeping the batch itself (not its address) makes the
    reuse exact: another tensor, or this one changed in place, is computed anew."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network
        self.num_features = network.num_features
        self.description = getattr(network, "description", type(network).__name__)
        self._last: tuple[torch.Tensor, int, torch.Tensor] | None = None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        last = self._last
        # inference tensors have no version counter: never reuse those
        version = -1 if images.is_inference() else images._version
        if last is None or last[0] is not images or version < 0 or last[1] != version:
            self._last = last = (images, version, self.network(images))
        return last[2]
