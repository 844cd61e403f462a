"""What every condition shares: the input and output checks, seeded per-sample draws and a serialisable config.

A condition turns images (B, 3, H, W) in [-1, 1] into condition images (B, channels, H, W) in [-1, 1] of the same
size: line art, grayscale, a low-resolution copy. An image-to-image prior reads the condition before the image
tokens, so a prior is trained for one condition and its config; :meth:`Condition.to_config` records it and
:func:`check_same_condition` refuses another.

A subclass sets ``name`` and ``channels``, stores each constructor argument under its own name (as scikit-learn
estimators do: :attr:`Condition.config` reads them back) and implements ``convert(images, generator)``. A condition
with random choices (line styles) draws them from ``generator`` only, so :meth:`Condition.sample` gives data set
sample ``index`` the same condition in every worker and every resumed run.
"""
from __future__ import annotations

import inspect
import json

import torch
from torch import nn

from ..core.registry import component_spec
from ..data.degradations import stable_seed


def _jsonable(value):
    """Tuples as lists (what JSON gives back), recursively, so a config and its JSON copy compare equal."""
    if isinstance(value, (tuple, list)):
        return [_jsonable(item) for item in value]
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    return value


def check_images(images) -> torch.Tensor:
    """``images`` as a float batch (B, 3, H, W); a single image (3, H, W) becomes a batch of one."""
    if (not isinstance(images, torch.Tensor) or images.dim() not in (3, 4) or images.shape[-3] != 3
            or not images.is_floating_point()):
        got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"A condition takes float images (B, 3, H, W) or (3, H, W) in [-1, 1], got {got}.")
    return images if images.dim() == 4 else images[None]


class Condition(nn.Module):
    """Base of the conditions: images (B, 3, H, W) in [-1, 1] -> condition images (B, ``channels``, H, W) in
    [-1, 1], the same spatial size.

    ``condition(images, generator=None)`` converts a batch (or one (3, H, W) image), each image with its own random
    draws from ``generator`` (the global RNG when None); :meth:`sample` seeds them from (seed, epoch, index) for data
    loaders. It is an ``nn.Module`` so a learned condition (an edge network) carries its weights like any component;
    the built-ins have none."""

    name: str = ""      # the registry name, for conditions constructed directly (vqstack.build records its own)
    channels: int = 0   # C of the output: 1 for line art and grayscale, 3 for a low-resolution copy

    def convert(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Float images (B, 3, H, W) in [-1, 1] -> (B, ``channels``, H, W); subclasses implement it."""
        raise NotImplementedError(f"{type(self).__name__} must implement convert(images, generator).")

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        batch = check_images(images)
        # float32 inside: blurs and thresholds in bf16 would move the lines; the caller's dtype comes back
        out = self.convert(batch.float(), generator)
        expected = (batch.shape[0], self.channels, *batch.shape[-2:])
        if tuple(out.shape) != expected:
            raise RuntimeError(f"condition {self.name or type(self).__name__} returned {tuple(out.shape)}, expected "
                               f"(B, channels, H, W) = {expected}.")
        out = out.clamp(-1, 1).to(images.dtype)  # resampling overshoot stays inside the image range
        return out if images.dim() == 4 else out[0]

    # --- seeded per-sample draws, as vqstack.data.degradations.Degradation.sample -------------------------------

    @staticmethod
    def generator(index: int, epoch: int = 0, seed: int = 0) -> torch.Generator:
        """The generator of data set sample ``index`` at ``epoch``: a function of (seed, epoch, index) alone.

        "condition" is part of the key, so a data set that also degrades its images with the same seed draws
        different numbers for the two."""
        return torch.Generator().manual_seed(stable_seed("condition", seed, epoch, index))

    def sample(self, image: torch.Tensor, index: int, epoch: int = 0, seed: int = 0) -> torch.Tensor:
        """The condition of data set sample ``index``, an image (3, H, W) -> (``channels``, H, W), the same in every
        worker and every resumed run."""
        return self(image, self.generator(index, epoch, seed))

    # --- what it is: name and constructor arguments ------------------------------------------------------------

    @property
    def config(self) -> dict:
        """The constructor's arguments, read back from the attributes of the same names (JSON values)."""
        params = [p.name for p in inspect.signature(type(self).__init__).parameters.values()
                  if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        missing = [name for name in params if not hasattr(self, name)]
        if missing:
            raise AttributeError(f"{type(self).__name__} must keep its constructor arguments {missing} as attributes "
                                 f"of the same names, or override Condition.config.")
        return {name: _jsonable(getattr(self, name)) for name in params}

    def to_config(self) -> dict:
        """``{"name", "kwargs"}``: what a prior records to rebuild this condition (:func:`build_condition`)."""
        spec = component_spec(self)
        name = spec["name"] if spec else self.name
        if not name:
            raise ValueError(f"{type(self).__name__} has no registry name: build it with "
                             f"vqstack.build('condition', name, ...) or set the class attribute 'name'.")
        config = {"name": name, "kwargs": self.config}
        json.dumps(config)  # a TypeError here names the argument that a saved prior could not record
        return config

    def extra_repr(self) -> str:
        try:
            return ", ".join(f"{key}={value!r}" for key, value in self.config.items())
        except AttributeError:  # a plugin that keeps no attributes still prints
            return ""


def build_condition(config: dict | str) -> Condition:
    """A condition from :meth:`Condition.to_config`'s ``{"name", "kwargs"}`` or a bare registry name."""
    from ..core.plugins import registry

    if isinstance(config, str):
        return registry("condition").build(config)
    if not isinstance(config, dict) or "name" not in config:
        raise ValueError(f"A condition config is a registry name or {{'name': ..., 'kwargs': {{...}}}}, got "
                         f"{str(config)[:80]}.")
    return registry("condition").build(config["name"], **config.get("kwargs", {}))


def check_same_condition(expected: dict | str, condition: Condition | dict | str, what: str = "This model") -> None:
    """Refuse a condition other than the one a model was trained for (``expected``, a config or a name), in one
    line naming both; a name alone matches that condition with its default arguments."""
    def normalised(value) -> dict:
        if isinstance(value, Condition):
            return value.to_config()
        return _jsonable(build_condition(value).to_config())  # defaults filled in, so "lineart" == its full config

    want, got = normalised(expected), normalised(condition)
    if want != got:
        raise ValueError(f"{what} was trained for condition {want['name']} {json.dumps(want['kwargs'])}, got "
                         f"{got['name']} {json.dumps(got['kwargs'])}; use the condition it was trained for.")
