"""Images for training, loaded with 🤗 datasets from a Hub id, an image folder, WebDataset shards or parquet."""
from __future__ import annotations

import glob
import hashlib
import io
import os
import random
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFile, UnidentifiedImageError

IMAGE_COLUMNS = ("image", "img", "jpg", "jpeg", "png", "webp")
MAX_RETRIES = 16  # consecutive unreadable files tolerated before giving up on the data set

# Why a row was skipped, as stable short names (metrics.jsonl keys "skipped/<reason>"; tensors index this tuple):
# "empty" zero-byte file or no image data, "not_an_image" not a format PIL knows (text, HTML, unsupported codec),
# "truncated" the file ends early, "corrupt" its data is damaged (bad checksum, broken stream), "too_large" over
# PIL's decompression-bomb limit (2 x Image.MAX_IMAGE_PIXELS), "other" anything else (message in the DataError).
SKIP_REASONS = ("empty", "not_an_image", "truncated", "corrupt", "too_large", "other")
# Above this many pixels an image is shrunk in PIL (JPEG decoded at 1/2..1/8 scale) before it becomes a float
# tensor; smaller images take the plain path, so their pixels are exactly those earlier runs saw.
LARGE_IMAGE_PIXELS = 4096 * 4096
MAX_ASPECT = 8  # a longer side beyond this many short sides is cropped in PIL first (the centre crop keeps none of it)


class DataError(ValueError):
    """The data argument does not name usable images."""


class EmptyImageError(OSError):
    """A zero-byte file, or a row with no image data at all."""


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
        return _image_folder(load_dataset, path, data, split)
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


def _image_folder(load_dataset, path: Path, data: str, split: str):
    """``imagefolder`` over ``path``, its errors for a folder without images turned into one clear DataError (it
    raises FileNotFoundError for an empty folder and ValueError "corresponds to no data" for one of other files)."""
    try:
        return load_dataset("imagefolder", data_dir=str(path), split=split)
    except (FileNotFoundError, ValueError) as err:
        from datasets.packaged_modules.imagefolder.imagefolder import ImageFolder

        if not any(f.suffix.lower() in ImageFolder.EXTENSIONS for f in path.rglob("*") if f.is_file()):
            raise DataError(f"--data {data!r} is a folder without image files (.png, .jpg, .webp, ...).") from err
        raise DataError(f"--data {data!r}: the image folder could not be loaded ({type(err).__name__}: "
                        f"{_one_line(err)}).") from err


def metadata_file(path) -> Path:
    """``path`` as a Path; a DataError when no file is there."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Metadata file {str(path)!r} does not exist.")
    return path


def file_sha256(path) -> str:
    """Identifies a labels file (a folder's metadata, or one given apart), so a changed file is noticed when what
    was made with it is reused. Here, not in labels.py: describe_source needs it and labels.py builds on this."""
    return hashlib.sha256(metadata_file(path).read_bytes()).hexdigest()


def describe_source(data: str) -> dict:
    """What ``--data`` names, for records that must notice another data set: an absolute path for local data (a
    Hub id as given), and the sha256 of an image folder's ``metadata.jsonl`` / ``metadata.csv`` (its labels)."""
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
    return image if image.mode == "RGB" else image.convert("RGB")  # no copy of an RGB image: it may be huge


def _open(value) -> Image.Image:
    """A datasets image value -> lazily opened PIL image; EmptyImageError for zero bytes or no data at all."""
    if isinstance(value, Image.Image):
        return value
    if isinstance(value, dict) and value.get("bytes") is not None:  # webdataset / parquet; the path is only a name
        if len(value["bytes"]) == 0:
            raise EmptyImageError(f"zero-byte image {value.get('path') or ''}".rstrip())
        return Image.open(io.BytesIO(value["bytes"]))
    if isinstance(value, dict) and value.get("path"):  # imagefolder
        if os.path.getsize(value["path"]) == 0:
            raise EmptyImageError(f"zero-byte file {value['path']}")
        return Image.open(value["path"])
    raise EmptyImageError(f"no image data: {type(value).__name__}")


def decode(value, min_side: int | None = None) -> Image.Image:
    """A datasets image value (PIL image, or {"bytes", "path"} when not decoded) -> PIL image, fully read.

    Over LARGE_IMAGE_PIXELS, a JPEG is decoded at the smallest 1/2..1/8 scale keeping both sides >= ``min_side``.
    Over PIL's bomb limit, ``Image.DecompressionBombError``; between its warning and its error we read the image
    anyway (shrunk, see ImageTransform), so its warning is silenced rather than repeated for every epoch."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        image = _open(value)
    if min_side and image.width * image.height > LARGE_IMAGE_PIXELS:
        image.draft(None, (min_side, min_side))  # a no-op for formats without reduced decoding
    image.load()  # surface truncated or corrupt files here, not later in a worker
    return image


def skip_reason(error: BaseException) -> str:
    """Which of SKIP_REASONS explains ``error``, raised while reading or converting an image."""
    message = str(error).lower()
    if isinstance(error, EmptyImageError):
        return "empty"
    if isinstance(error, (Image.DecompressionBombError, MemoryError)):
        return "too_large"
    if isinstance(error, UnidentifiedImageError):  # before OSError: it is one
        return "not_an_image"
    if "truncated" in message or isinstance(error, EOFError):
        return "truncated"
    if isinstance(error, SyntaxError) or any(word in message for word in ("broken", "data stream", "decoder",
                                                                          "codec", "corrupt", "crc")):
        return "corrupt"
    return "other"


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def describe_skips(counts) -> str:
    """Per-reason counts (a sequence aligned with SKIP_REASONS) -> "2 truncated, 1 empty"; zero counts left out."""
    return ", ".join(f"{int(n)} {reason}" for reason, n in zip(SKIP_REASONS, counts) if int(n))


def shrink(image: Image.Image, resolution: int) -> Image.Image:
    """Cut a very large or very elongated RGB image down in PIL, where it costs 3 bytes a pixel, before it becomes
    a float tensor: keep the centre band the crop will keep, then box-reduce to a short side >= 2 x resolution (the
    antialiased resize after it does the rest). Other images are returned as they are."""
    width, height = image.size
    short = min(width, height)
    if max(width, height) > MAX_ASPECT * short:
        left, top = (width - short) // 2, (height - short) // 2
        image = image.crop((left, top, left + short, top + short))
    factor = short // (2 * resolution)
    if image.width * image.height > LARGE_IMAGE_PIXELS and factor > 1:
        image = image.reduce(factor)
    return image


class ImageTransform:
    """PIL image -> float tensor (3, R, R) in [-1, 1]: resize the short side, then center-crop."""

    def __init__(self, resolution: int):
        from torchvision.transforms import v2

        self.resolution = resolution
        self.transform = v2.Compose([v2.PILToTensor(), v2.Resize(resolution, antialias=True),
                                     v2.CenterCrop(resolution), v2.ToDtype(torch.float32, scale=True),
                                     v2.Normalize([0.5] * 3, [0.5] * 3)])

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.transform(shrink(to_rgb(image), self.resolution))


class ImageDataset(torch.utils.data.Dataset):
    """Training samples ``{"pixel_values", "skipped", "skip_counts", "index"}``; an unreadable file is replaced by
    the next readable one (``index`` is the row actually used), so batches keep their size on every process.

    ``skipped`` (0 or 1) and ``skip_counts`` (long, one count per SKIP_REASONS) say whether the requested row
    itself was unreadable, and why: the unreadable rows passed over while looking for a replacement are counted at
    their own index, so one pass over the data set counts each unreadable file exactly once.

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

    def pixels(self, row: int) -> torch.Tensor:
        """Row ``row`` as a float tensor (3, R, R) in [-1, 1], unflipped; raises whatever reading it raised."""
        return self.transform(decode(self.dataset[row][self.column], min_side=2 * self.transform.resolution))

    def __getitem__(self, index: int) -> dict:
        counts = torch.zeros(len(SKIP_REASONS), dtype=torch.long)
        tried = torch.zeros(len(SKIP_REASONS), dtype=torch.long)
        for offset in range(min(MAX_RETRIES, len(self.dataset))):
            row = (index + offset) % len(self.dataset)
            try:
                pixels = self.pixels(row)
            except Exception as err:  # a damaged file can make PIL raise nearly anything; the reason tells which
                reason = SKIP_REASONS.index(skip_reason(err))
                tried[reason] += 1
                if offset == 0:  # only the requested row is this sample's to count; the others, at their own index
                    counts[reason] += 1
                last = err
                continue
            if self.flips(index):
                pixels = pixels.flip(-1)
            return {"pixel_values": pixels, "skipped": int(counts.sum()), "skip_counts": counts, "index": row}
        raise DataError(f"{int(tried.sum())} unreadable images in a row from row {index} ({describe_skips(tried)}; "
                        f"last: {_one_line(last)}): is --data really images?")


def check_readable(images: ImageDataset, source: str | None = None) -> int:
    """Before training: the first row that reads as an image, trying rows in order (one for ordinary data).

    Raises DataError, one line naming ``source`` (the --data value), how many rows were tried and why each
    failed, when the data set is empty or none of its rows is readable."""
    where = f"--data {source!r}" if source else "the data set"
    if len(images) == 0:
        raise DataError(f"{where} holds no images.")
    counts = torch.zeros(len(SKIP_REASONS), dtype=torch.long)
    for row in range(len(images)):
        try:
            images.pixels(row)
            return row
        except Exception as err:  # as in ImageDataset.__getitem__: any failure is the file's
            counts[SKIP_REASONS.index(skip_reason(err))] += 1
            last = err
    raise DataError(f"None of the {len(images)} images in {where} is readable ({describe_skips(counts)}; "
                    f"last: {_one_line(last)}).")


def hold_out(images: ImageDataset, count: int) -> tuple[range | list[int], torch.Tensor]:
    """``(training rows, held-out images)`` of ``images``: the last ``count`` readable rows are held out, in data
    order, so evaluation never meets an unreadable file, and returned decoded, (count, 3, R, R) unflipped (each is
    read once); unreadable rows stay with the training rows, where they are skipped and counted. With readable data
    the training rows are the plain ``range(n - count)``."""
    held, pixels = [], []
    for row in reversed(range(len(images))):
        if len(held) == count:
            break
        try:
            pixels.append(images.pixels(row))
        except Exception:  # unreadable: training skips and reports it
            continue
        held.append(row)
    n, size = len(images), images.transform.resolution
    stacked = torch.stack(pixels[::-1]) if pixels else torch.empty(0, 3, size, size)
    if held[::-1] == list(range(n - len(held), n)):
        return range(n - len(held)), stacked
    chosen = set(held)
    return [row for row in range(n) if row not in chosen], stacked


class SkipTally:
    """Running count of the unreadable images skipped while training, per reason, for the log and metrics.jsonl::

        tally = SkipTally()
        for batch in loader:
            tally.add(batch)              # counts of this process, on the batch's device
    SkipTally(accelerator.reduce(tally.counts, "sum"))   # every process's counts, at log time
        record.update(tally.as_dict())    # {"skipped_images": 3, "skipped/truncated": 2, "skipped/empty": 1}
        tally.message()                   # "skipped 3 unreadable images so far: 1 empty, 2 truncated", or None

    Counts are per read: over several epochs a bad file counts once per epoch."""

    def __init__(self, counts: torch.Tensor | None = None):
        self.counts = torch.zeros(len(SKIP_REASONS), dtype=torch.long) if counts is None else counts.long()

    def add(self, batch) -> None:
        """Add a batch (a dict with "skip_counts", shape (B, R) after collation) or a (..., R) count tensor.
        The counts stay on the batch's device (no host sync per step); they are read at log time."""
        counts = batch["skip_counts"] if isinstance(batch, dict) else batch
        counts = torch.as_tensor(counts).detach().reshape(-1, len(SKIP_REASONS)).sum(0).long()
        self.counts = self.counts.to(counts.device) + counts

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def as_dict(self) -> dict:
        """``skipped_images`` always, ``skipped/<reason>`` for each reason seen."""
        return {"skipped_images": self.total, **{f"skipped/{reason}": int(n) for reason, n in
                                                 zip(SKIP_REASONS, self.counts) if n}}

    def message(self) -> str | None:
        """One line for the log, or None while nothing was skipped."""
        if not self.total:
            return None
        noun = "image" if self.total == 1 else "images"
        return f"skipped {self.total} unreadable {noun} so far: {describe_skips(self.counts)}"


ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is unreadable, not silently grey
