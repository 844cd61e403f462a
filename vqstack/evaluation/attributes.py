"""Attribute fidelity: does a reconstruction keep what the data set's tags say (hair colour, eye colour, a class)?

PSNR averages over pixels, so a tokenizer can score well and still turn aqua hair blue. Here a small CNN is trained
on the data set's own tags for one column (untagged rows are ignored) at the evaluation resolution, on a fixed
stratified split of the tagged images; it then classifies the held-out originals and their reconstructions, and
the report compares the two accuracies per class.

    report = attribute_fidelity(tokenizer, "../shared/data/anime-faces", "hair", resolution=32)
    report.values      # {"attr:hair/real": ..., "attr:hair/recon": ..., ...}: flat numbers
    report.per_class   # {"aqua": {"count": ..., "share": ..., "real": ..., "recon": ..., "ratio": ...}, ...}
    print(report.table())

The classifier is cached as Hugging Face caches models, never beside the user's tokenizer:
``$VQSTACK_CACHE/attributes/attr-<column>-<hash>/`` (default ``$XDG_CACHE_HOME/vqstack``, i.e.
``~/.cache/vqstack``), one folder per key (data, tags, resolution, split, training settings), with a record of
that key. Any other key trains a classifier of its own; the same key reuses it.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ..core.files import publish_dir, staging_dir
from ..core.registry import suggest
from ..core.serialization import load_weights, read_config, save_weights, write_config
from ..data.images import DataError, ImageDataset, describe_source, image_column, load_image_dataset
from .tokenizer_info import tokenizer_resolution

SPLIT_SEED = 0
HELD_OUT_FRACTION = 0.2  # of each class's tagged images; the classifier never trains on them
MAX_INPUT_SIZE = 64  # larger evaluation images are resized down (antialiased) inside the classifier: colour survives
# Flips are the only augmentation: colour jitter would teach the classifier to ignore the very signal we measure.
# "min_steps": small data sets take more epochs, so a few hundred tagged images still make a classifier
TRAINING = {"epochs": 10, "min_steps": 300, "batch_size": 64, "lr": 3e-3, "weight_decay": 5e-4, "width": 16,
            "seed": 0, "loss": "class-balanced cross-entropy"}
MIN_SHARE = 0.01  # classes with at least this share of the tagged images count for worst-ratio
RECORD_NAME = "record.json"
CACHE_ENV = "VQSTACK_CACHE"
CACHE_VERSION = 1  # bump when the classifier or its training changes in a way the key's settings do not show


# --- the tags ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnTags:
    """One tag column of a data set: its classes, each row's class (-1 untagged), and the fixed split of the tagged
    rows into the classifier's training rows and the held-out rows that originals and reconstructions are scored
    on."""

    column: str
    classes: tuple[str, ...]
    labels: tuple[int, ...]
    train: tuple[int, ...]
    held_out: tuple[int, ...]

    def shares(self) -> list[float]:
        """Each class's share of the tagged images."""
        counts = torch.bincount(torch.tensor([label for label in self.labels if label >= 0]),
                                minlength=len(self.classes))
        return (counts / counts.sum()).tolist()

    def fingerprint(self) -> str:
        """sha256 of the classes and every row's class: any change to this column's tags changes it."""
        return hashlib.sha256(json.dumps([self.classes, self.labels]).encode()).hexdigest()


def tag_columns(dataset) -> list[str]:
    return [name for name in dataset.column_names if name != image_column(dataset)]


def column_tags(dataset, column: str, seed: int = SPLIT_SEED, fraction: float = HELD_OUT_FRACTION) -> ColumnTags:
    """The :class:`ColumnTags` of ``column``; a column that is missing or has fewer than 2 classes fails with one
    message naming the columns there are."""
    columns = tag_columns(dataset)
    if column not in columns:
        raise DataError(f"attr:{column}: the data set has no tag column {column!r}; its columns: "
                        f"{', '.join(columns) or '(none)'}.{suggest(column, columns)}")
    classes, labels = class_labels(dataset, column)
    if len(classes) < 2:
        raise DataError(f"attr:{column} needs at least 2 classes in column {column!r}; its tags have "
                        f"{len(classes)} ({', '.join(classes) or 'all null'}). Tag columns: {', '.join(columns)}.")
    train, held_out = stratified_split(labels, len(classes), fraction, seed)
    if not held_out:
        raise DataError(f"attr:{column}: no class of column {column!r} has the 2 tagged images needed to hold one "
                        f"out; tag more images.")
    return ColumnTags(column, tuple(classes), tuple(labels), tuple(train), tuple(held_out))


def class_labels(dataset, column: str) -> tuple[list[str], list[int]]:
    """(class names, each row's class index or -1 for a null tag). A ClassLabel column keeps its names."""
    from datasets import ClassLabel

    values = dataset[column]
    if any(isinstance(value, (list, dict)) for value in values):
        raise DataError(f"attr:{column}: column {column!r} holds lists or dicts; attr: needs one tag per image.")
    distinct = {value for value in values if value is not None}
    try:
        ordered = sorted(distinct)
    except TypeError:  # mixed types
        ordered = sorted(distinct, key=str)
    index = {value: i for i, value in enumerate(ordered)}
    feature = dataset.features[column]
    names = [feature.int2str(v) if isinstance(feature, ClassLabel) else str(v) for v in ordered]
    return names, [index[value] if value is not None else -1 for value in values]


def stratified_split(labels: list[int], num_classes: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(training rows, held-out rows): ``fraction`` of each class held out (at least one image when the class has
    two), drawn with a seeded generator, so the same tags always give the same split."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.tensor(labels)
    train, held_out = [], []
    for label in range(num_classes):
        rows = (labels == label).nonzero().flatten()
        rows = rows[torch.randperm(len(rows), generator=generator)].tolist()
        n = min(len(rows) - 1, max(1, round(len(rows) * fraction))) if len(rows) > 1 else 0
        held_out += rows[:n]
        train += rows[n:]
    return sorted(train), sorted(held_out)


def tagged_batches(dataset, rows, labels, resolution: int, batch_size: int):
    """(images (B, 3, R, R) in [-1, 1], their class indices) for ``rows``, center-cropped as evaluation does."""
    images = ImageDataset(dataset.select(rows), resolution, random_flip=False)
    classes = torch.tensor([labels[row] for row in rows])
    # its own generator: iterating a DataLoader otherwise draws a seed from the caller's global RNG
    loader = torch.utils.data.DataLoader(images, batch_size=batch_size, generator=torch.Generator())
    for batch in loader:
        yield batch["pixel_values"], classes[batch["index"]]  # "index": the row used (an unreadable one is skipped)


# --- the classifier -------------------------------------------------------------------------------------------


class AttributeClassifier(nn.Module):
    """A small CNN (three stride-2 3x3 conv-BN-ReLU blocks, a 4x4 map, a linear head): images (B, 3, R, R) in
    [-1, 1] -> logits over ``classes``. Images are first resized (bilinear, antialiased) to ``input_size``, so
    training stays quick at any evaluation resolution."""

    def __init__(self, classes: list[str], input_size: int, width: int = 16):
        from torchvision.ops import Conv2dNormActivation

        super().__init__()
        self.config = {"classes": list(classes), "input_size": int(input_size), "width": int(width)}
        channels = [3, width, 2 * width, 4 * width]
        blocks = [Conv2dNormActivation(c_in, c_out, 3, stride=2) for c_in, c_out in zip(channels, channels[1:])]
        # a 4x4 map, not a global pool: where a colour is (hair on top, background around) matters
        self.features = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(4), nn.Flatten())
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(channels[-1] * 16, len(classes)))

    def resize(self, images: torch.Tensor) -> torch.Tensor:
        size = self.config["input_size"]
        if images.shape[-2:] == (size, size):
            return images
        return F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(self.resize(images)))

    def save(self, directory) -> None:
        write_config(directory, self.config)
        save_weights(self, directory)

    @classmethod
    def load(cls, directory, device="cpu") -> "AttributeClassifier":
        classifier = cls(**read_config(directory))
        load_weights(classifier, directory)  # on the CPU, then moved: safetensors refuses multi-process "cpu:1"
        return classifier.to(device).eval()


def to_bytes(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats -> uint8: a training set held in memory at a quarter of the size."""
    return ((images + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


def from_bytes(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 127.5 - 1


def classifier_inputs(classifier, dataset, tags: ColumnTags, rows, resolution: int):
    """(all ``rows`` at the classifier's input size as uint8, their classes)."""
    pairs = [(to_bytes(classifier.resize(images)), labels)
             for images, labels in tagged_batches(dataset, rows, tags.labels, resolution, batch_size=256)]
    return torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])


def train_classifier(images: torch.Tensor, labels: torch.Tensor, classifier: AttributeClassifier,
                     device="cpu") -> AttributeClassifier:
    """Train ``classifier`` on uint8 ``images``: cross-entropy weighted by inverse class frequency (so a class with
    2% of the images is learnt too, and its ratio means something), AdamW, a one-cycle schedule, random horizontal
    flips as the only augmentation. Order and flips come from a seeded generator; run it under :func:`seeded` (as
    :func:`attribute_classifier` does) for seeded weights and dropout too."""
    settings = TRAINING
    generator = torch.Generator().manual_seed(settings["seed"])
    classifier = classifier.to(device).train()
    counts = torch.bincount(labels, minlength=len(classifier.config["classes"])).float().clamp_min(1)
    weight = (counts.sum() / (len(counts) * counts)).to(device)
    optimizer = torch.optim.AdamW(classifier.parameters(), lr=settings["lr"], weight_decay=settings["weight_decay"])
    steps = -(-len(images) // settings["batch_size"])
    epochs = max(settings["epochs"], -(-settings["min_steps"] // steps))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, settings["lr"], total_steps=epochs * steps)
    for _ in range(epochs):
        for batch in torch.randperm(len(images), generator=generator).split(settings["batch_size"]):
            x = from_bytes(images[batch])
            flip = torch.rand(len(batch), generator=generator) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x).to(device)
            loss = F.cross_entropy(classifier(x), labels[batch].to(device), weight=weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    return classifier.eval()


@contextmanager
def seeded(device):
    """The global RNG (initial weights, dropout) seeded for training, and the caller's state restored after."""
    device = torch.device(device)
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(TRAINING["seed"])
        yield


@contextmanager
def cpu_threads(device, threads: int = 1):
    """One intra-op thread while the classifier trains on the CPU: convolutions this small gain nothing from more,
    and lose ten-fold when another job shares the cores."""
    if torch.device(device).type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@torch.no_grad()
def accuracy(classifier, images: torch.Tensor, labels: torch.Tensor, device="cpu") -> float:
    hits = sum(int((classifier(from_bytes(x).to(device)).argmax(1).cpu() == y).sum())
               for x, y in zip(images.split(256), labels.split(256)))
    return hits / max(len(labels), 1)


# --- the cache ------------------------------------------------------------------------------------------------


def cache_key(data: str, split: str, dataset, tags: ColumnTags, resolution: int) -> dict:
    """Everything a classifier depends on: the data (where, its metadata file, 🤗 datasets' fingerprint of the loaded
    rows, which changes when an image file does), the split, the column and its tags, the resolution, the held-out
    split and the training settings. A cached classifier is reused only for an equal key."""
    return {**describe_source(str(data)), "dataset_fingerprint": getattr(dataset, "_fingerprint", None),
            "split": split, "column": tags.column, "tags_sha256": tags.fingerprint(), "resolution": int(resolution),
            "split_seed": SPLIT_SEED, "held_out_fraction": HELD_OUT_FRACTION, "max_input_size": MAX_INPUT_SIZE,
            "training": TRAINING, "version": CACHE_VERSION}


def user_cache() -> Path:
    """The cache root, as Hugging Face picks its own: $VQSTACK_CACHE, else $XDG_CACHE_HOME/vqstack, else
    ~/.cache/vqstack."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "vqstack"


def cache_path(key: dict, cache_dir=None) -> Path:
    """``<cache root>/attributes/attr-<column>-<hash of the key>``: one folder per key, so classifiers of other data,
    resolutions or tags never replace each other. ``cache_dir`` replaces the root (default :func:`user_cache`)."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", key["column"])
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    root = Path(cache_dir).expanduser() if cache_dir is not None else user_cache()
    return root / "attributes" / f"attr-{name}-{digest}"


def read_record(directory: Path) -> dict | None:
    try:
        return json.loads((directory / RECORD_NAME).read_text())
    except (OSError, ValueError):
        return None


def stale_fields(record: dict | None, key: dict) -> list[str]:
    """The key fields a cached record differs in (empty: reusable)."""
    old = (record or {}).get("key", {})
    return [name for name in key if old.get(name) != json.loads(json.dumps(key[name]))]


def is_cached(directory: Path, key: dict, column: str) -> bool:
    """Whether ``directory`` holds a classifier trained on ``key``; warns about one trained on something else (a
    hand-copied folder), which is then replaced."""
    record = read_record(directory)
    if record is None:
        return False
    stale = stale_fields(record, key)
    if stale:
        warnings.warn(f"attr:{column}: the classifier cached in {directory} was trained with another "
                      f"{', '.join(stale)}; training a new one.", stacklevel=3)
    return not stale


def save_cached(classifier, record: dict, directory: Path) -> Path | None:
    """Save into ``directory`` (written whole, then moved in place); None, with a warning, when it cannot be
    written: the evaluation goes on with the classifier in memory."""
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = staging_dir(directory)
        classifier.save(staging)
        (staging / RECORD_NAME).write_text(json.dumps(record, indent=2) + "\n")
        return publish_dir(staging, directory)
    except OSError as err:  # a read-only home: still evaluate
        warnings.warn(f"attr: cannot cache the classifier in {directory} ({err.strerror or err}); set "
                      f"{CACHE_ENV} to a writable folder to keep it.", stacklevel=3)
        return None


def attribute_classifier(dataset, tags: ColumnTags, data: str, resolution: int, cache_dir=None, split="train",
                         device="cpu") -> tuple[AttributeClassifier, dict]:
    """The classifier for ``tags`` (of ``data``'s ``split``, loaded as ``dataset``) at ``resolution``, from the cache
    (root ``cache_dir``, default :func:`user_cache`) or trained now and cached, and what it is: {"path",
    "trained_now", "held_out_accuracy", "train_images", "held_out_images", "seconds", "key"}."""
    key = cache_key(data, split, dataset, tags, resolution)
    directory = cache_path(key, cache_dir)
    if is_cached(directory, key, tags.column):
        record = read_record(directory)
        return AttributeClassifier.load(directory, device), {"path": str(directory), "trained_now": False, **record}
    start = time.perf_counter()
    with seeded(device), cpu_threads(device):
        classifier = AttributeClassifier(tags.classes, min(resolution, MAX_INPUT_SIZE), TRAINING["width"])
        images, labels = classifier_inputs(classifier, dataset, tags, tags.train, resolution)
        held_images, held_labels = classifier_inputs(classifier, dataset, tags, tags.held_out, resolution)
        train_classifier(images, labels, classifier, device)
        held_out_accuracy = accuracy(classifier, held_images, held_labels, device)
    record = {"held_out_accuracy": held_out_accuracy, "train_images": len(labels), "held_out_images": len(held_labels),
              "seconds": round(time.perf_counter() - start, 1), "key": key}
    path = save_cached(classifier, record, directory)
    return classifier, {"path": str(path) if path else None, "trained_now": True, **record}


# --- scoring originals and reconstructions --------------------------------------------------------------------


@torch.no_grad()
def attribute_confusion(tokenizer, classifier, dataset, tags: ColumnTags, resolution: int, *, limit: int | None = None,
                        batch_size: int = 64, rank: int = 0, world: int = 1) -> torch.Tensor:
    """Confusion matrices (2, C, C) of the classifier on the held-out originals ([0]) and their reconstructions
    ([1]); rows: the tag, columns: the prediction. ``limit``: the first N held-out images. Under torch.distributed
    each process scores every ``world``-th image from ``rank`` and the matrices are summed across processes."""
    from .metrics import AttributeConfusion

    device = next(tokenizer.parameters()).device
    metric = AttributeConfusion(classifier.to(device), len(tags.classes)).to(device)
    rows = list(tags.held_out[:limit] if limit else tags.held_out)
    for images, labels in tagged_batches(dataset, rows[rank::world], tags.labels, resolution, batch_size):
        images = images.to(device)
        metric.update(tokenizer.decode(tokenizer.encode(images)), images, labels.to(device))
    return metric.compute()


def class_accuracy(confusion: torch.Tensor) -> torch.Tensor:
    """(2, C) accuracy of each class on originals and reconstructions; NaN for a class with no held-out image."""
    return confusion.diagonal(dim1=1, dim2=2).double() / confusion[0].sum(1).double()


def per_class(tags: ColumnTags, confusion: torch.Tensor) -> dict[str, dict]:
    """Per class: held-out images scored, share of the tagged images, accuracy on originals and reconstructions,
    their ratio, and the class its reconstructions are most often mistaken for."""
    counts = confusion[0].sum(1).tolist()
    accuracy = class_accuracy(confusion)
    ratio = accuracy[1] / accuracy[0]
    wrong = confusion[1].clone().fill_diagonal_(0)
    shares = tags.shares()
    return {name: {"count": counts[c], "share": round(shares[c], 4), "real": rounded(accuracy[0, c]),
                   "recon": rounded(accuracy[1, c]), "ratio": rounded(ratio[c]),
                   "recon_mistaken_for": tags.classes[int(wrong[c].argmax())] if wrong[c].sum() else None}
            for c, name in enumerate(tags.classes)}


def rounded(value: torch.Tensor) -> float | None:
    """4 decimals for the per-class JSON; None where undefined (no image, or a ratio over 0)."""
    return round(float(value), 4) if torch.isfinite(value) else None


def summary(tags: ColumnTags, confusion: torch.Tensor) -> dict[str, float]:
    """The flat numbers: accuracy on originals and reconstructions, plain (over images) and balanced (the mean
    over classes), and worst-ratio, the lowest recon/real ratio among classes with >= MIN_SHARE of the tags."""
    plain = confusion.diagonal(dim1=1, dim2=2).sum(1).double() / confusion[0].sum()
    accuracy = class_accuracy(confusion)
    balanced = accuracy.nanmean(1)
    ratio = accuracy[1] / accuracy[0]
    held_to_the_bar = (torch.tensor(tags.shares()) >= MIN_SHARE) & ratio.isfinite()
    column = tags.column
    values = {f"attr:{column}/real": float(plain[0]), f"attr:{column}/recon": float(plain[1]),
              f"attr:{column}/real-balanced": float(balanced[0]), f"attr:{column}/recon-balanced": float(balanced[1])}
    if held_to_the_bar.any():
        values[f"attr:{column}/worst-ratio"] = float(ratio[held_to_the_bar].min())
    return values


@dataclass
class AttributeReport:
    """What :func:`attribute_fidelity` measured: ``values`` (flat numbers, as ``vqstack eval``'s table shows them),
    ``per_class`` and ``classifier`` (where it is, whether it was trained now, its own held-out accuracy)."""

    column: str
    values: dict[str, float]
    per_class: dict[str, dict]
    classifier: dict

    def record(self) -> dict:
        """The JSON entries: the flat numbers, then ``attr:<column>/per_class`` and ``attr:<column>/classifier``."""
        return {**self.values, f"attr:{self.column}/per_class": self.per_class,
                f"attr:{self.column}/classifier": self.classifier}

    def table(self) -> str:
        return attribute_table(self.column, self.per_class, self.classifier)


def attribute_table(column: str, classes: dict[str, dict], classifier: dict) -> str:
    """Per class, for people: images, share, real and recon accuracy, ratio, what reconstructions become."""
    width = max(len(column) + 5, *(len(name) for name in classes))
    lines = [f"{'attr:' + column:<{width}}  {'count':>5}  {'share':>6}  {'real':>5}  {'recon':>5}  {'ratio':>5}  "
             f"recon mistaken for"]
    for name, row in classes.items():
        cells = [f"{row[key]:>5.2f}" if row[key] is not None else f"{'-':>5}" for key in ("real", "recon", "ratio")]
        lines.append(f"{name:<{width}}  {row['count']:>5}  {row['share']:>6.1%}  {'  '.join(cells)}  "
                     f"{row['recon_mistaken_for'] or ''}".rstrip())
    how = f"trained now in {classifier['seconds']:g} s" if classifier["trained_now"] else "cached"
    lines.append(f"classifier: {classifier['path'] or 'not cached'} ({how}; held-out accuracy on originals "
                 f"{classifier['held_out_accuracy']:.3f}, {classifier['train_images']} training images)")
    return "\n".join(lines)


def attribute_tables(record: dict) -> list[str]:
    """The per-class table of every attr:<column> in an evaluation record."""
    suffix = "/per_class"
    columns = [key[len("attr:"):-len(suffix)] for key in record if key.startswith("attr:") and key.endswith(suffix)]
    return [attribute_table(column, record[f"attr:{column}{suffix}"], record[f"attr:{column}/classifier"])
            for column in columns]


def attribute_fidelity(tokenizer, data: str, column: str, *, resolution: int | None = None, split: str = "train",
                       cache_dir=None, limit: int | None = None, batch_size: int = 64) -> AttributeReport:
    """Accuracy of a classifier of ``column`` (trained on ``data``'s own tags, or taken from the cache) on the
    held-out tagged originals of ``data`` and on their reconstructions by ``tokenizer``.

    resolution  image side (default: the tokenizer's encoder resolution)
    cache_dir   cache root instead of $VQSTACK_CACHE (default ~/.cache/vqstack); the classifier is kept there
    limit       score the first N held-out images only (the classifier still trains on the whole training split)"""
    resolution = tokenizer_resolution(tokenizer, resolution)
    dataset = load_image_dataset(str(data), split=split)
    tags = column_tags(dataset, column)
    device = next(tokenizer.parameters()).device
    classifier, info = attribute_classifier(dataset, tags, data, resolution, cache_dir, split, device)
    confusion = attribute_confusion(tokenizer, classifier, dataset, tags, resolution, limit=limit,
                                    batch_size=batch_size)
    return attribute_report(tags, confusion, info)


def attribute_report(tags: ColumnTags, confusion: torch.Tensor, classifier: dict) -> AttributeReport:
    return AttributeReport(tags.column, summary(tags, confusion), per_class(tags, confusion), classifier)
