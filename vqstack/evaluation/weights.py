"""Where the pretrained weights of the standard metrics are found; vqstack never downloads them.

FID's InceptionV3 (torch-fidelity's port of the TensorFlow FID network) and LPIPS's ImageNet backbone are looked up
the way their packages would cache them (``torch.hub.get_dir()/checkpoints/<file name of the URL>``; ``TORCH_HOME``
moves it) or taken from a path the user gives. A missing file is a :class:`MissingWeightsError` whose one-line
message names the file and both ways to supply it, raised before anything is built (so nothing can download).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

# torch-fidelity's FeatureExtractorInceptionV3 loads this URL through torch.hub, which caches it under its basename.
INCEPTION_URL = ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                 "weights-inception-2015-12-05-6726825d.pth")


class MissingWeightsError(FileNotFoundError):
    """Pretrained weights a metric needs are neither in the torch hub cache nor at the path given."""


def hub_checkpoint(url: str) -> Path:
    """Where ``torch.hub.load_state_dict_from_url(url)`` would cache ``url``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def find_weights(what: str, url: str, given, option: str) -> Path:
    """The checkpoint for ``what`` (a metric name): ``given`` when set, else the hub cache; else one clear error.

    ``option`` is the keyword the caller exposes (``fid_weights`` becomes ``--fid-weights`` on the command line)."""
    name = os.path.basename(url)
    flag = "--" + option.replace("_", "-")
    if given is not None:
        path = Path(given).expanduser()
        if not path.is_file():
            raise MissingWeightsError(f"{flag} {given} does not exist: it must be the checkpoint {name} ({url}).")
        return path
    path = hub_checkpoint(url)
    if not path.is_file():
        raise MissingWeightsError(
            f"{what} needs the pretrained weights {name}, not found at {path} (the torch hub cache; TORCH_HOME moves "
            f"it) and vqstack never downloads: copy {url} to that path, or pass {flag} PATH ({option}= in Python).")
    return path


def inception_weights(given=None, what: str = "FID") -> Path:
    """torch-fidelity's InceptionV3 FID weights (``weights-inception-2015-12-05-6726825d.pth``)."""
    return find_weights(what, INCEPTION_URL, given, "fid_weights")


def lpips_backbone_weights(net: str, given=None, what: str = "lpips") -> Path:
    """torchvision's ImageNet checkpoint of the LPIPS backbone ``net`` (alex: ``alexnet-owt-7be5be79.pth``)."""
    from ..perceptual.lpips import NETS, torchvision_weights

    if net not in NETS:
        raise ValueError(f"Unknown LPIPS net {net!r}; choose one of {', '.join(NETS)}.")
    return find_weights(what, torchvision_weights(net).url, given, "lpips_weights")
