"""Line art from images: black lines on white paper (line = -1, paper = +1), in several styles.

A user's drawing never matches one edge filter, so a prior trained on one filter's lines learns that filter, not
line art. Each image therefore draws its own style (a seeded generator makes the draw reproducible):

- detector ``xdog``: the dark side of a difference of Gaussians, as XDoG (Winnemöller et al. 2012) with the tonal
  term left out, so flat dark areas stay paper and only edges become lines: thin, one-sided strokes;
- detector ``sobel``: the Sobel gradient magnitude of the blurred image: strokes centred on the edge, thicker and
  even on both sides;
- ``sigma``: the Gaussian's std in pixels, the stroke's thickness and how much fine texture is ignored;
- ``threshold``: the weakest edge drawn, as a contrast (0..1; a black-to-white step is 1);
- ``sharpness``: how fast ink saturates above the threshold: high gives hard inked lines, low soft pencil.

Responses are scaled so a black-to-white step gives about 1 for both detectors at every sigma, so one threshold
range means the same to both. Everything is batched torch (one grouped convolution per blur), CPU or GPU.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .base import Condition

K = 1.6  # XDoG's ratio of the two Gaussians' sigmas: their difference approximates the Laplacian of Gaussian


def _peak_dog(k: float = K) -> float:
    """The largest value of Phi(x / k) - Phi(x), the DoG of a unit step, to scale xdog's response to 1 there."""
    x = -math.sqrt(2 * math.log(k) / (1 - 1 / k ** 2))  # where the derivative phi(x / k) / k - phi(x) is zero
    phi = lambda t: 0.5 * (1 + math.erf(t / math.sqrt(2)))  # noqa: E731  (the normal CDF)
    return phi(x / k) - phi(x)


XDOG_PEAK = _peak_dog()  # about 0.112
SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8  # /8: a per-pixel derivative


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Blur each image (B, C, H, W) with its own sigma (B,) in pixels; borders replicate, so the image's frame
    draws no line."""
    b, c, h, w = images.shape
    radius = max(1, math.ceil(3 * float(sigma.max())))  # +-3 sigma holds 99.7% of the weight
    t = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    kernel = torch.exp(-t ** 2 / (2 * sigma.to(images)[:, None] ** 2))
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (B*C, 2r+1): one per channel
    x = images.reshape(1, b * c, h, w)  # groups = B*C: every image-channel convolved with its own kernel at once
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), kernel[:, None, None, :], groups=b * c)
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), kernel[:, None, :, None], groups=b * c)
    return x.reshape(b, c, h, w)


def xdog_response(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) in [0, 1] -> (B, H, W): the dark side of each edge, ~1 at a black-to-white step."""
    dog = gaussian_blur(images, K * sigma) - gaussian_blur(images, sigma)  # > 0 where a pixel is darker than around
    return dog.clamp(min=0).amax(1) / XDOG_PEAK  # max over channels: an edge between two colours of equal luma counts


def sobel_response(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) in [0, 1] -> (B, H, W): the gradient magnitude of the blurred image, ~1 at a black-to-white
    step (sigma * sqrt(2 pi) undoes the blur's flattening of the step, so thickness does not change the scale)."""
    b, c, h, w = images.shape
    x = F.pad(gaussian_blur(images, sigma).reshape(b * c, 1, h, w), (1, 1, 1, 1), mode="replicate")
    kernels = torch.stack([SOBEL_X, SOBEL_X.T])[:, None].to(x)
    gradient = F.conv2d(x, kernels).reshape(b, c, 2, h, w)
    magnitude = gradient.square().sum(2).sqrt().amax(1)
    return magnitude * (sigma.to(x) * math.sqrt(2 * math.pi))[:, None, None]


DETECTORS = {"xdog": xdog_response, "sobel": sobel_response}


def _range(value, what: str, low_limit: float, high_limit: float) -> tuple[float, float]:
    """A number or a (low, high) pair -> (low, high) floats inside the open interval (low_limit, high_limit]."""
    pair = (value, value) if isinstance(value, (int, float)) and not isinstance(value, bool) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in pair):
        raise ValueError(f"lineart {what} must be a number or a (low, high) pair, got {value!r}.")
    low, high = float(pair[0]), float(pair[1])
    if not low_limit < low <= high <= high_limit:
        raise ValueError(f"lineart {what} must satisfy {low_limit:g} < low <= high <= {high_limit:g}, got {value!r}.")
    return low, high


class LineArt(Condition):
    """images (B, 3, H, W) -> line art (B, 1, H, W): -1 ink, +1 paper.

    Args:
        detectors: edge detectors to draw from, uniformly per image: "xdog", "sobel" or both.
        sigma: Gaussian std in pixels (stroke thickness), a number or a (low, high) range drawn uniformly.
        threshold: weakest edge contrast drawn (0..1, a black-to-white step is 1), a number or a range.
        sharpness: ink per unit of response above the threshold (hard ink high, pencil low), a number or a range
            drawn log-uniformly (it spans an order of magnitude).
        random: True draws a detector and the three values for every image from the generator; False uses the
            first detector and the middle of each range (the geometric middle for sharpness) for every image.
    """

    name = "lineart"
    channels = 1

    def __init__(self, detectors=("xdog", "sobel"), sigma=(0.4, 1.0), threshold=(0.05, 0.25),
                 sharpness=(4.0, 40.0), random: bool = True):
        super().__init__()
        detectors = (detectors,) if isinstance(detectors, str) else tuple(detectors)
        unknown = [d for d in detectors if d not in DETECTORS]
        if not detectors or unknown:
            raise ValueError(f"lineart detectors must be some of {', '.join(DETECTORS)}, got {list(detectors)}.")
        if not isinstance(random, bool):
            raise ValueError(f"lineart random must be True or False, got {random!r}.")
        self.detectors = detectors
        # beyond 20 pixels a sigma erases every shape at the sizes trained here; a larger value is a typo
        self.sigma = _range(sigma, "sigma", 0.0, 20.0)
        self.threshold = _range(threshold, "threshold", 0.0, 1.0)
        self.sharpness = _range(sharpness, "sharpness", 0.0, 1e4)
        self.random = random

    def styles(self, n: int, generator: torch.Generator | None) -> dict:
        """Per-image detector index and sigma, threshold, sharpness (each (n,), on the CPU)."""
        if not self.random:
            u = torch.full((n, 4), 0.5)
            u[:, 0] = 0.0  # the first detector
        else:
            # one (n, 4) draw: image i uses row i whatever the ranges, so it gets the same style in a batch of any
            # size (given the same generator state before it) and a changed range changes only its own value
            u = torch.rand((n, 4), generator=generator)
        lerp = lambda r, t: r[0] + (r[1] - r[0]) * t  # noqa: E731
        return {
            "detector": (u[:, 0] * len(self.detectors)).long().clamp(max=len(self.detectors) - 1),
            "sigma": lerp(self.sigma, u[:, 1]),
            "threshold": lerp(self.threshold, u[:, 2]),
            "sharpness": torch.exp(lerp((math.log(self.sharpness[0]), math.log(self.sharpness[1])), u[:, 3])),
        }

    def convert(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        b, _, h, w = images.shape
        style = self.styles(b, generator)
        x = (images + 1) / 2  # [0, 1], the scale the response's "contrast" is measured on
        response = images.new_zeros(b, h, w)
        for i, name in enumerate(self.detectors):  # each detector on its images only, batched
            chosen = (style["detector"] == i).nonzero().flatten()
            if len(chosen):
                response[chosen.to(images.device)] = DETECTORS[name](x[chosen], style["sigma"][chosen])
        threshold = style["threshold"].to(images)[:, None, None]
        sharpness = style["sharpness"].to(images)[:, None, None]
        # XDoG's soft threshold: nothing below it (exact paper on flat areas), then tanh saturating towards ink
        ink = torch.tanh(sharpness * (response - threshold).clamp(min=0))
        return (1 - 2 * ink)[:, None]
