"""Degradations that turn clean images into the damaged inputs a restorer learns to repair.

A spec string names the steps, applied in the written order::

    blur:0.5-2,down:4,noise:0-0.1,jpeg:30-90

``LOW-HIGH`` is drawn uniformly for each image, a single number is fixed. Pipelines separated by ``;`` are
alternatives, one drawn uniformly for each image, so one restorer learns several kinds of damage::

    down:4,noise:0-0.08;blur:1-3;jpeg:10-40


- ``blur:SIGMA``     Gaussian blur, sigma in pixels (0 = none).
- ``down:F``         bicubic (antialiased) down by F, then bicubic back up to the input size; F is 2, 4 or 8, or a
                     choice drawn uniformly such as ``down:2|4|8``.
- ``noise:STD``      additive Gaussian noise, std on the [0, 1] image scale (0.1 ~ 25/255), independent per channel.
- ``poisson:PEAK``   Poisson (shot) noise: a white pixel collects PEAK photons, a pixel of brightness v in [0, 1]
                     Poisson(v * PEAK) of them; fewer photons, more noise (``poisson:50-200`` is moderate), and the
                     variance v / PEAK grows with brightness, as in a camera sensor.
- ``jpeg:QUALITY``   JPEG compression at an integer quality 1..100 (PIL's encoder and decoder, in memory; 4:2:0
                     chroma subsampling, PIL's default).

Every image gets its own parameters and noise from a ``torch.Generator``; :meth:`Degradation.sample` seeds one
from (seed, epoch, index), so a data loader degrades sample ``index`` identically with any number of workers and
in a resumed run. Everything runs on the CPU, image by image, at about a millisecond per 64x64 image.
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import io
import math
import re
from pathlib import Path

import torch

# A non-negative decimal number, exponent allowed; a range is two of them joined by "-" ("1e-3-0.1" parses).
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_RANGE = re.compile(rf"^({_NUMBER})(?:-({_NUMBER}))?$")
EXAMPLE = "blur:0.5-2,down:4,noise:0-0.1,jpeg:30-90"
DOWN_FACTORS = (2, 4, 8)


def _number(value: float) -> str:
    """0.5 -> "0.5", 2.0 -> "2": the shortest text that reads back as the same float."""
    return repr(int(value)) if float(value).is_integer() else repr(float(value))


def _uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    """A float drawn uniformly from [low, high]; drawn even when low == high, so every image uses the same
    number of draws whatever its spec's ranges."""
    return low + (high - low) * torch.rand((), generator=generator).item()


def parse_range(step, args: str, low_limit: float, high_limit: float, what: str,
                integer: bool = False) -> tuple[float, float]:
    """``"0.5-2"`` -> (0.5, 2.0), ``"3"`` -> (3.0, 3.0), checked against [low_limit, high_limit]; ``step`` (a step
    class) gives the name and example of the messages."""
    name = step.name
    match = _RANGE.match(args.replace(" ", ""))
    if not match:
        raise ValueError(f"degradation {name}:{args}: expected {what} as a number or a LOW-HIGH range, e.g. "
                         f"{step.example}.")
    low = float(match.group(1))
    high = float(match.group(2)) if match.group(2) is not None else low
    if integer and not (low.is_integer() and high.is_integer()):
        raise ValueError(f"degradation {name}:{args}: {what} must be whole numbers.")
    if low > high:
        raise ValueError(f"degradation {name}:{args}: low {_number(low)} > high {_number(high)}; write LOW-HIGH.")
    if low < low_limit or high > high_limit:
        raise ValueError(f"degradation {name}:{args}: {what} must lie in {_number(low_limit)}..{_number(high_limit)}.")
    return low, high


@dataclasses.dataclass(frozen=True)
class RangeStep:
    """A step whose parameter is drawn from [low, high]; subclasses set ``name``, ``example``, ``limits`` (the
    valid interval), ``what`` (the parameter, for messages) and ``integer``, and implement ``__call__``."""

    low: float
    high: float
    integer = False

    @classmethod
    def parse(cls, args: str) -> "RangeStep":
        low, high = parse_range(cls, args, *cls.limits, cls.what, integer=cls.integer)
        return cls(int(low), int(high)) if cls.integer else cls(low, high)

    def __str__(self) -> str:
        return f"{self.name}:{_range_text(self.low, self.high)}"


@dataclasses.dataclass(frozen=True)
class Blur(RangeStep):
    """Gaussian blur with sigma (pixels) drawn from [low, high]."""

    name = "blur"
    example = "blur:0.5-2"
    # beyond ~20 pixels every image in the sizes trained here is a flat colour; a larger value is a typo
    limits, what = (0.0, 20.0), "sigma in pixels"

    def __call__(self, image: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        from torchvision.transforms.v2.functional import gaussian_blur

        sigma = _uniform(self.low, self.high, generator)
        if sigma <= 0:
            return image
        # +-3 sigma holds 99.7% of the kernel's weight; reflect padding needs the half-width below the image side
        half = min(math.ceil(3 * sigma), min(image.shape[-2:]) - 1)
        if half < 1:
            return image
        return gaussian_blur(image, [2 * half + 1] * 2, [sigma, sigma])


@dataclasses.dataclass(frozen=True)
class Down:
    """Bicubic down by a factor drawn from ``factors``, then bicubic back up to the input size."""

    factors: tuple[int, ...]
    name = "down"
    example = "down:2|4|8"

    @classmethod
    def parse(cls, args: str) -> "Down":
        choices = [part.strip() for part in args.split("|")]
        if not all(part.isdigit() and int(part) in DOWN_FACTORS for part in choices):
            raise ValueError(f"degradation down:{args}: the factor must be one of {', '.join(map(str, DOWN_FACTORS))}, "
                             f"or a choice such as down:2|4|8.")
        return cls(tuple(sorted({int(part) for part in choices})))

    def __str__(self) -> str:
        return f"{self.name}:{'|'.join(map(str, self.factors))}"

    def __call__(self, image: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms.v2.functional import resize

        factor = self.factors[int(torch.randint(len(self.factors), (), generator=generator))]
        height, width = image.shape[-2:]
        small = [max(1, round(height / factor)), max(1, round(width / factor))]
        # antialias on the way down, or a fine pattern aliases into a coarse one instead of being lost
        image = resize(image, small, interpolation=InterpolationMode.BICUBIC, antialias=True)
        return resize(image, [height, width], interpolation=InterpolationMode.BICUBIC, antialias=True)


@dataclasses.dataclass(frozen=True)
class Noise(RangeStep):
    """Additive Gaussian noise, std drawn from [low, high] on the [0, 1] image scale."""

    name = "noise"
    example = "noise:0-0.1"
    limits, what = (0.0, 1.0), "the std on the [0, 1] image scale"

    def __call__(self, image: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        std = _uniform(self.low, self.high, generator)
        return image + std * torch.randn(image.shape, generator=generator)


@dataclasses.dataclass(frozen=True)
class Poisson(RangeStep):
    """Poisson (shot) noise: PEAK photons, drawn from [low, high], at white."""

    name = "poisson"
    example = "poisson:50-200"
    # below one photon at white the image is mostly black; 1e6 photons is already noiseless in 8 bits
    limits, what = (1.0, 1e6), "photons at white"

    def __call__(self, image: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        peak = _uniform(self.low, self.high, generator)
        return torch.poisson(image.clamp(0, 1) * peak, generator=generator) / peak


@dataclasses.dataclass(frozen=True)
class Jpeg(RangeStep):
    """JPEG compression at an integer quality drawn from [low, high]."""

    name = "jpeg"
    example = "jpeg:30-90"
    limits, what, integer = (1, 100), "quality", True

    def __call__(self, image: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        import numpy as np
        from PIL import Image

        quality = int(torch.randint(self.low, self.high + 1, (), generator=generator))
        pixels = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        # PIL, not torchvision.io.encode_jpeg: the same libjpeg bytes, but torchvision 0.29 deprecates its codecs
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
        with Image.open(buffer) as decoded:
            return torch.from_numpy(np.array(decoded.convert("RGB"))).permute(2, 0, 1).float() / 255


STEPS = {step.name: step for step in (Blur, Down, Noise, Poisson, Jpeg)}


def apply_steps(steps, image: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """``steps`` in order on one image in [0, 1]; clamping after each keeps what a saved image would keep
    (bicubic overshoot and noise beyond black or white are lost)."""
    for step in steps:
        image = step(image, generator).clamp(0, 1)
    return image


@dataclasses.dataclass(frozen=True)
class OneOf:
    """Alternative pipelines (tuples of steps), one drawn uniformly for each image: the ``;`` of a spec."""

    options: tuple

    def __str__(self) -> str:
        return ";".join(",".join(map(str, steps)) for steps in self.options)

    def __call__(self, image: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return apply_steps(self.options[int(torch.randint(len(self.options), (), generator=generator))], image,
                           generator)


def _range_text(low: float, high: float) -> str:
    return _number(low) if low == high else f"{_number(low)}-{_number(high)}"


def parse_step(text: str):
    """``"blur:0.5-2"`` -> Blur(0.5, 2.0); an unknown name lists the known ones."""
    name, colon, args = (part.strip() for part in text.partition(":"))
    if name not in STEPS:
        close = difflib.get_close_matches(name, STEPS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown degradation {name!r}{hint}; known: {', '.join(STEPS)}, e.g. {EXAMPLE}.")
    if not colon or not args:
        raise ValueError(f"degradation {name!r} needs its parameters after a colon, e.g. {EXAMPLE}.")
    return STEPS[name].parse(args)


def stable_seed(*parts) -> int:
    """A 63-bit seed from integers or names, the same in every process and Python run (unlike ``hash`` of a
    string, which Python salts per process)."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


@dataclasses.dataclass(frozen=True)
class Degradation:
    """Steps applied in order to images in [-1, 1]; picklable, so DataLoader workers can hold one.

    ``degradation(images, generator)`` degrades a (3, H, W) image or a (B, 3, H, W) batch, each image with its
    own draws; :meth:`sample` seeds them from (seed, epoch, index) for data loaders."""

    steps: tuple = ()
    seed: int = 0

    def __post_init__(self):
        if not self.steps:
            raise ValueError(f"a degradation needs at least one step; known: {', '.join(STEPS)}, e.g. {EXAMPLE}.")

    def __str__(self) -> str:
        return ",".join(map(str, self.steps))

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if images.dim() not in (3, 4) or images.shape[-3] != 3 or not images.is_floating_point():
            raise ValueError(f"degrade: expected float images (3, H, W) or (B, 3, H, W) in [-1, 1], got "
                             f"{images.dtype} {tuple(images.shape)}.")
        batch = images.detach().reshape(-1, *images.shape[-3:]).to("cpu", torch.float32)
        if len(batch) == 0:  # an empty batch (the last of an exhausted shard): nothing to stack
            return images.clone()
        # the steps work on [0, 1], the scale of pixels, noise std and photon counts
        out = torch.stack([apply_steps(self.steps, (image + 1) / 2, generator) for image in batch]) * 2 - 1
        return out.reshape(images.shape).to(images.device, images.dtype)

    def generator(self, index: int, epoch: int = 0) -> torch.Generator:
        """The generator of sample ``index`` at ``epoch``: a function of (seed, epoch, index) alone."""
        return torch.Generator().manual_seed(stable_seed(self.seed, epoch, index))

    def sample(self, image: torch.Tensor, index: int, epoch: int = 0) -> torch.Tensor:
        """Degrade data set sample ``index`` (3, H, W) as every worker and every resumed run degrades it."""
        return self(image, self.generator(index, epoch))

    def pil(self, image, seed: int = 0):
        """A PIL image -> its degraded PIL image (RGB), the draws seeded by ``seed``."""
        import numpy as np
        from PIL import Image

        from .images import to_rgb

        pixels = torch.from_numpy(np.asarray(to_rgb(image), dtype=np.float32)).permute(2, 0, 1) / 127.5 - 1
        out = self(pixels, torch.Generator().manual_seed(seed))
        return Image.fromarray(((out + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy())

    def to_config(self) -> dict:
        """JSON-able record of the degradation, e.g. for a restorer's config."""
        return {"spec": str(self), "seed": self.seed}

    @classmethod
    def from_config(cls, config: dict | str) -> "Degradation":
        """Inverse of :meth:`to_config`; a bare spec string is accepted too (seed 0)."""
        if isinstance(config, str):
            return parse_spec(config)
        return parse_spec(config["spec"], seed=config.get("seed", 0))


def parse_steps(text: str, spec: str) -> tuple:
    """``"blur:0.5-2,down:4"`` -> (Blur(0.5, 2.0), Down((4,))); ``spec`` is the whole string, for messages."""
    parts = [part.strip() for part in text.split(",")]
    if not any(parts):
        raise ValueError(f"empty degradation spec; give steps such as {EXAMPLE} (known: {', '.join(STEPS)}).")
    if not all(parts):
        raise ValueError(f"degradation spec {spec!r} has an empty step (two commas in a row?).")
    return tuple(parse_step(part) for part in parts)


def parse_spec(text: str, seed: int = 0) -> Degradation:
    """``"blur:0.5-2,down:4,noise:0-0.1,jpeg:30-90"`` -> a :class:`Degradation` applying those steps in order;
    ``"down:4,noise:0.05;blur:2;jpeg:20"`` -> one drawing one of the three pipelines for each image."""
    text = str(text)
    alternatives = [parse_steps(part, text) for part in text.split(";")]
    steps = alternatives[0] if len(alternatives) == 1 else (OneOf(tuple(alternatives)),)
    return Degradation(steps, seed=int(seed))


def degrade_files(degradation: Degradation, image: Path, out: Path, seed: int = 0) -> int:
    """Degrade the image file ``image`` into ``out``, or every image of the folder ``image`` into the folder
    ``out`` under the same names; returns how many images were written."""
    from ..pipelines.files import image_pairs, read_image, save_image

    pairs = image_pairs(image, out)
    folder = Path(image).is_dir()
    for source, target in pairs:
        # in a folder each file's draws come from (seed, its name), so they do not change when other files come
        # or go; a .jpg out is JPEG-compressed once more on saving (at 95, which adds little)
        save_image(degradation.pil(read_image(source), seed=stable_seed(seed, source.name) if folder else seed),
                   target)
    return len(pairs)


class DegradedImages(torch.utils.data.Dataset):
    """``images`` (an ImageDataset) with ``"degraded"`` added to each sample: ``degradation.sample`` of the
    (flipped) clean image, seeded by (seed, epoch, index) like the flips, so a sample is damaged the same way in any
    worker and in a resumed run. ``set_epoch`` before each epoch's iterator is made (workers copy the dataset)."""

    def __init__(self, images, degradation):
        self.images, self.degradation, self.epoch = images, degradation, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.images.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        sample = self.images[index]
        sample["degraded"] = self.degradation.sample(sample["pixel_values"], index, self.epoch)
        return sample
