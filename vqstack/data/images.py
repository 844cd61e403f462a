"""Images for training, loaded with 🤗 datasets from a Hub id, an image folder, WebDataset shards or parquet."""
from __future__ import annotations

import glob
import io
import os
import random
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFile

IMAGE_COLUMNS = ("image", "img", "jpg", "jpeg", "png", "webp")
MAX_RETRIES = 16  # consecutive unreadable files tolerated before giving up on the data set


class DataError(ValueError):
    """The data argument does not name usable images."""


def _files(pattern: str) -> list[str]:
    return sorted(glob.glob(os.path.expanduser(pattern), recursive=True))


def load_image_dataset(data: str, split: str = "train"):
    """A :class:`datasets.Dataset` from one of:

    - a local folder of images (``imagefolder``; a ``metadata.jsonl`` beside them adds tag columns),
    - a folder or glob of WebDataset ``.tar`` shards, or of ``.parquet`` files,
    - a Hugging Face Hub dataset id (``user/name``).
    """
    from datasets import load_dataset

    path = Path(os.path.expanduser(data))
    if path.is_dir():
        tars, parquets = _files(str(path / "*.tar")), _files(str(path / "*.parquet"))
        if tars:
            return load_dataset("webdataset", data_files={split: tars}, split=split)
        if parquets:
            return load_dataset("parquet", data_files={split: parquets}, split=split)
        return load_dataset("imagefolder", data_dir=str(path), split=split)
    if any(ch in data for ch in "*?[") or path.suffix in (".tar", ".parquet"):
        files = _files(data)
        if not files:
            raise DataError(f"--data {data!r} matches no files.")
        suffixes = {Path(f).suffix for f in files}
        if suffixes == {".tar"}:
            return load_dataset("webdataset", data_files={split: files}, split=split)
        if suffixes == {".parquet"}:
            return load_dataset("parquet", data_files={split: files}, split=split)
        raise DataError(f"--data {data!r} mixes file types {sorted(suffixes)}; give .tar shards or .parquet files.")
    if data.count("/") == 1 and not path.exists():
        try:
            return load_dataset(data, split=split)
        except Exception as err:  # offline, private or misspelt: say what to do instead
            raise DataError(
                f"Could not load the Hub dataset {data!r} ({type(err).__name__}: {err}). Without internet, pass a "
                f"local image folder, WebDataset shards ('dir/*.tar') or parquet files to --data."
            ) from err
    raise DataError(f"--data {data!r} is neither a folder, a glob of .tar/.parquet files, nor a Hub id 'user/name'.")


def describe_source(data: str) -> dict:
    """What ``--data`` names, for records that must notice another data set: an absolute path for local data (a
    Hub id as given), and the sha256 of an image folder's ``metadata.jsonl`` / ``metadata.csv`` (its labels)."""
    from .labels import file_sha256

    path = Path(os.path.expanduser(data))
    if not path.exists() and not any(ch in data for ch in "*?["):
        return {"data": data, "metadata_sha256": None}
    source = path.resolve() if path.exists() else Path(os.path.abspath(os.path.expanduser(data)))
    metadata = [path / name for name in ("metadata.jsonl", "metadata.csv") if (path / name).is_file()]
    return {"data": str(source), "metadata_sha256": file_sha256(metadata[0]) if metadata else None}


def image_column(dataset) -> str:
    """The name of the column holding images."""
    from datasets import Image as ImageFeature

    for name, feature in dataset.features.items():
        if isinstance(feature, ImageFeature):
            return name
    for name in IMAGE_COLUMNS:
        if name in dataset.column_names:
            return name
    raise DataError(f"No image column among {dataset.column_names}; expected an Image feature or one of "
                    f"{', '.join(IMAGE_COLUMNS)}.")


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB: transparency over white, 16-bit and float scaled, palette and CMYK converted."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float32)
        high = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array / high * 255.0, 0, 255).astype(np.uint8), mode="L")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


def decode(value) -> Image.Image:
    """A datasets image value (PIL image, or {"bytes", "path"} when not decoded) -> PIL image, fully read."""
    if isinstance(value, Image.Image):
        image = value
    elif isinstance(value, dict) and value.get("bytes") is not None:
        image = Image.open(io.BytesIO(value["bytes"]))
    elif isinstance(value, dict) and value.get("path"):
        image = Image.open(value["path"])
    else:
        raise OSError(f"not an image: {type(value).__name__}")
    image.load()  # surface truncated or corrupt files here, not later in a worker
    return image


class ImageTransform:
    """PIL image -> float tensor (3, R, R) in [-1, 1]: resize the short side, then center-crop."""

    def __init__(self, resolution: int):
        from torchvision.transforms import v2

        self.transform = v2.Compose([v2.PILToTensor(), v2.Resize(resolution, antialias=True),
                                     v2.CenterCrop(resolution), v2.ToDtype(torch.float32, scale=True),
                                     v2.Normalize([0.5] * 3, [0.5] * 3)])

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.transform(to_rgb(image))


class ImageDataset(torch.utils.data.Dataset):
    """Training samples ``{"pixel_values", "skipped", "index"}``; an unreadable file is replaced by the next
    readable one and counted in ``skipped`` (``index`` is the row actually used), so batches keep their size on
    every process.

    Random flips are drawn from (seed, epoch, index), not from the global RNG, so they are the same in a resumed
    run, with any number of workers."""

    def __init__(self, dataset, resolution: int, random_flip: bool = True, seed: int = 0):
        from datasets import Image as ImageFeature

        self.column = image_column(dataset)
        if isinstance(dataset.features[self.column], ImageFeature):
            dataset = dataset.cast_column(self.column, ImageFeature(decode=False))  # we decode, and catch errors
        self.dataset = dataset
        self.transform = ImageTransform(resolution)
        self.random_flip, self.seed, self.epoch = random_flip, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def flips(self, index: int) -> bool:
        return self.random_flip and random.Random(f"{self.seed}:{self.epoch}:{index}").random() < 0.5

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        for skipped in range(MAX_RETRIES):
            row = self.dataset[(index + skipped) % len(self.dataset)]
            try:
                pixels = self.transform(decode(row[self.column]))
                if self.flips(index):
                    pixels = pixels.flip(-1)
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
                continue
            return {"pixel_values": pixels, "skipped": skipped, "index": (index + skipped) % len(self.dataset)}
        raise DataError(f"{MAX_RETRIES} unreadable images in a row from index {index}: is --data really images?")


ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is unreadable, not silently grey
