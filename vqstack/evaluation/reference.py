"""The reference side of Fréchet distances and precision/recall (the real images' features), computed once per data
set, image selection, resolution and feature network, and cached, as clean-fid and torch-fidelity do.

    ref = reference_features("../shared/data/anime-faces", "vgg16-stlpips", resolution=64)
    ref.count, ref.mean, ref.cov     # images; float64 (D,) and (D, D), as torchmetrics' FID computes them
    ref.features                     # float32 (N, D): each image's features (precision/recall need them)
    ref.info                         # {"path", "computed_now", "seconds", "key"}
    values = evaluate_samples(samples, ref, ["fd-vgg", "precision", "recall"])   # no real image is read again

The cache lives beside the attribute classifiers (:func:`~vqstack.evaluation.attributes.user_cache`:
``$VQSTACK_CACHE``, else ``~/.cache/vqstack``), one folder per key:
``fd-reference/<network>-<hash of the key>/`` holding ``features.safetensors`` (``features`` float32 (N, D);
``sum`` (D,) and ``cov_sum`` (D, D) float64, torchmetrics' own FID states; ``mean``, ``cov`` float64; ``count``)
and ``record.json`` (the key, the file's sha256, how long computing took). The key is everything the features
depend on (:func:`reference_key`); any other key computes a folder of its own. A folder is written whole, then moved
into place, and checked against its record when read: a damaged or hand-edited one is computed again, with a
warning. ``VQSTACK_NO_REFERENCE_CACHE=1`` (or ``use_cache=False``) neither reads nor writes it.
"""
from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import re
import time
import warnings
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..core.files import publish_dir, staging_dir
from ..data.images import describe_source
from .attributes import read_record, stale_fields, user_cache
from .catalog import DEFAULT_FEATURES, FID_FEATURES
from .features import SharedFeatures

logger = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump when how features are computed changes in a way the key does not show
FOLDER = "fd-reference"
TENSORS_NAME = "features.safetensors"
RECORD_NAME = "record.json"  # the same name attributes.read_record reads
DISABLE_ENV = "VQSTACK_NO_REFERENCE_CACHE"
# What data.images.ImageTransform does to every reference image (evaluation never flips). Part of the key: change
# this text (or CACHE_VERSION) whenever ImageTransform changes.
TRANSFORM = ("short side resized to the resolution (torchvision v2.Resize, bilinear, antialiased; images over "
             "4096x4096 px box-reduced in PIL first), center-cropped square, not flipped, scaled to [-1, 1]")


@dataclass
class ReferenceFeatures:
    """The features of a set of real images under one feature network.

    ``sum`` and ``cov_sum`` are exactly the states torchmetrics' ``FrechetInceptionDistance`` accumulates
    (Σ f and Σ f fᵀ in float64), so a Fréchet distance fed them equals one fed the images."""

    network: str  # the features registry name the metrics know it by ("vgg16-stlpips", "inception", ...)
    features: torch.Tensor  # (N, D) float32, in data order
    sum: torch.Tensor  # (D,) float64
    cov_sum: torch.Tensor  # (D, D) float64
    info: dict = field(default_factory=dict)  # path, computed_now, seconds, key

    @property
    def count(self) -> int:
        return len(self.features)

    @property
    def mean(self) -> torch.Tensor:
        return self.sum / self.count

    @property
    def cov(self) -> torch.Tensor:
        """The unbiased covariance, computed from the sums as torchmetrics computes it."""
        mean = self.mean.unsqueeze(0)
        return (self.cov_sum - self.count * mean.t().mm(mean)) / (self.count - 1)

    def describe(self) -> str:
        """One line for people: reused or computed, where, how long."""
        info, where = self.info, self.info.get("path") or "not cached"
        what = f"reference features ({self.network}, {self.count} images)"
        if info.get("computed_now"):
            return f"{what}: computed in {info.get('seconds', 0):.1f} s, cached in {where}"
        return f"{what}: reused from {where} (read in {info.get('seconds', 0):.2f} s)"


def cache_enabled(use_cache: bool | None = None) -> bool:
    """``use_cache`` when given, else on unless ``$VQSTACK_NO_REFERENCE_CACHE`` is set (to anything but 0)."""
    if use_cache is not None:
        return bool(use_cache)
    return os.environ.get(DISABLE_ENV, "").strip() in ("", "0")


# --- the key ----------------------------------------------------------------------------------------------------


def local_files(data: str) -> list[Path] | None:
    """The files behind a local ``data`` (a folder: every file under it, hidden ones left out; a glob: its
    matches), sorted; None for a Hub id."""
    path = Path(os.path.expanduser(data))
    if path.is_dir():
        return sorted(p for p in path.rglob("*")
                      if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts))
    if any(ch in data for ch in "*?["):
        return [Path(f) for f in sorted(glob.glob(os.path.expanduser(data), recursive=True)) if Path(f).is_file()]
    return [path] if path.is_file() else None


def data_identity(data: str, dataset=None) -> dict:
    """Which images: the source (absolute path, its metadata's sha256) and, for local data, the number of files and
    a sha256 of each one's relative path, size and modification time (a stat per file, no image is read: an edited,
    added, removed or re-copied file changes it); for a Hub dataset, 🤗 datasets' fingerprint of the loaded rows."""
    source = describe_source(str(data))
    files = local_files(str(data))
    if files is None:
        return {**source, "files": None, "dataset_fingerprint": getattr(dataset, "_fingerprint", None)}
    root = Path(os.path.expanduser(str(data)))
    digest = hashlib.sha256()
    for path in files:
        stat = path.stat()
        name = path.relative_to(root).as_posix() if root.is_dir() else str(path)
        digest.update(f"{name}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return {**source, "files": len(files), "files_sha256": digest.hexdigest()}


_IDENTITIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def network_identity(name: str, network: nn.Module) -> dict:
    """Which network: its registry name, class, ``description`` (sizes, input resolution) and a sha256 of every
    tensor of its state dict (names, dtypes, shapes, bytes), so other weights (another checkpoint, a random
    stand-in) never share a cache entry. Hashed once per network object (feature networks are frozen)."""
    inner = network.network if isinstance(network, SharedFeatures) else network
    found = _IDENTITIES.get(inner)
    if found is None:
        digest = hashlib.sha256()
        for key, tensor in sorted(inner.state_dict().items()):
            tensor = tensor.detach().to("cpu").contiguous()
            digest.update(f"{key} {tensor.dtype} {tuple(tensor.shape)}\n".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().data)
        found = {"network_class": f"{type(inner).__module__}.{type(inner).__qualname__}",
                 "network_description": getattr(inner, "description", None), "weights_sha256": digest.hexdigest()}
        _IDENTITIES[inner] = found
    return {"network": name, **found}


def reference_key(data: str, dataset, rows: range, resolution: int, split: str, name: str,
                  network: nn.Module) -> dict:
    """Everything the reference features depend on: the data (:func:`data_identity`), the split, which rows
    (``rows`` of the loaded split: the first N for ``--limit N``) and how many, the resolution and transform, the
    network (:func:`network_identity`) and this cache's version."""
    return {**data_identity(data, dataset), "split": split, "rows": [rows.start, rows.stop, rows.step],
            "images": len(rows), "resolution": int(resolution), "transform": TRANSFORM,
            **network_identity(name, network), "version": CACHE_VERSION}


def reference_path(key: dict, cache_dir=None) -> Path:
    """``<cache root>/fd-reference/<network>-<16 hex digits of the key's sha256>``."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", key["network"])
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    root = Path(cache_dir).expanduser() if cache_dir is not None else user_cache()
    return root / FOLDER / f"{name}-{digest}"


# --- reading and writing ----------------------------------------------------------------------------------------


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_reference(directory: Path, key: dict) -> ReferenceFeatures | None:
    """The features cached in ``directory`` for ``key``; None when there are none, or (with a warning) when the
    folder is damaged or was made for another key: the caller computes them again and replaces it."""
    if not directory.exists():
        return None
    record = read_record(directory)
    problem = None
    if record is None:
        problem = f"its {RECORD_NAME} is missing or unreadable"
    elif stale_fields(record, key):
        problem = f"it was computed with another {', '.join(stale_fields(record, key))}"
    else:
        try:
            return _read_tensors(directory, record, key)
        except Exception as err:  # truncated, flipped bits, wrong shapes: whatever safetensors or torch raise
            problem = f"it is damaged ({type(err).__name__}: {(str(err).strip().splitlines() or [''])[0]})"
    warnings.warn(f"Reference features cached in {directory}: {problem}; computing them again.", stacklevel=3)
    return None


def _read_tensors(directory: Path, record: dict, key: dict) -> ReferenceFeatures:
    from safetensors.torch import load_file

    path = directory / TENSORS_NAME
    if file_sha256(path) != record.get("sha256"):
        raise ValueError(f"{TENSORS_NAME} does not match the sha256 in {RECORD_NAME}")
    tensors = load_file(str(path))
    features, total, cov_sum = tensors["features"], tensors["sum"], tensors["cov_sum"]
    n, d = key["images"], record.get("num_features")
    if features.shape != (n, d) or total.shape != (d,) or cov_sum.shape != (d, d) or int(tensors["count"]) != n:
        raise ValueError(f"shapes {tuple(features.shape)}, {tuple(total.shape)}, {tuple(cov_sum.shape)} for "
                         f"{n} images of {d} features")
    return ReferenceFeatures(key["network"], features, total, cov_sum)


def write_reference(reference: ReferenceFeatures, directory: Path, key: dict, seconds: float,
                    device="cpu") -> Path | None:
    """Save into ``directory`` (written whole into ``<directory>.tmp``, then moved into place); None, with a
    warning, when it cannot be written: the evaluation goes on with the features in memory."""
    from safetensors.torch import save_file

    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = staging_dir(directory)
        staging.mkdir(parents=True)
        tensors = {"features": reference.features, "sum": reference.sum, "cov_sum": reference.cov_sum,
                   "mean": reference.mean, "cov": reference.cov, "count": torch.tensor([reference.count])}
        save_file({name: t.detach().cpu().contiguous() for name, t in tensors.items()}, str(staging / TENSORS_NAME))
        record = {"key": key, "images": reference.count, "num_features": int(reference.sum.shape[0]),
                  "sha256": file_sha256(staging / TENSORS_NAME), "seconds": round(seconds, 1),
                  "device": str(device), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        (staging / RECORD_NAME).write_text(json.dumps(record, indent=2) + "\n")
        return publish_dir(staging, directory)
    except OSError as err:  # a read-only home: still evaluate
        warnings.warn(f"Cannot cache the reference features in {directory} ({err.strerror or err}); set "
                      f"VQSTACK_CACHE to a writable folder to keep them.", stacklevel=3)
        return None


# --- computing --------------------------------------------------------------------------------------------------


def _world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@torch.no_grad()
def compute_references(networks: dict[str, nn.Module], batches: Iterable, device="cpu") -> dict[str,
                                                                                                 ReferenceFeatures]:
    """Run every network once per batch (image tensors, or ImageDataset batch dicts) and accumulate its features
    as torchmetrics' FID does (float64 Σ f and Σ f fᵀ, batch by batch). Under torch.distributed each process gives
    its own contiguous shard, in rank order: the sums are added and the features gathered, so every process ends
    with those of the whole set."""
    sums = {name: torch.zeros(net.num_features, dtype=torch.float64, device=device) for name, net in networks.items()}
    cov_sums = {name: torch.zeros(net.num_features, net.num_features, dtype=torch.float64, device=device)
                for name, net in networks.items()}
    features = {name: [] for name in networks}
    for batch in batches:
        images = (batch["pixel_values"] if isinstance(batch, dict) else batch).to(device)
        for name, network in networks.items():
            out = network(images)
            out = out.unsqueeze(0) if out.dim() == 1 else out
            wide = out.double()
            sums[name] += wide.sum(dim=0)
            cov_sums[name] += wide.t().mm(wide)
            features[name].append(out.float())
    rank, world = _world()
    results = {}
    for name, network in networks.items():
        mine = torch.cat(features[name]) if features[name] else torch.zeros(0, network.num_features, device=device)
        if world > 1:
            import torch.distributed as dist
            from torchmetrics.utilities.distributed import gather_all_tensors

            dist.all_reduce(sums[name])
            dist.all_reduce(cov_sums[name])
            mine = torch.cat(gather_all_tensors(mine))
        results[name] = ReferenceFeatures(name, mine.cpu(), sums[name].cpu(), cov_sums[name].cpu())
    return results


def _on_every_process(found: dict, names: list[str], device) -> dict:
    """The entries of ``found`` that every process found (a process that did not find one computes it, and then
    all must: computing is a collective step)."""
    rank, world = _world()
    if world == 1:
        return found
    import torch.distributed as dist

    flags = torch.tensor([int(name in found) for name in names], dtype=torch.int64, device=device)
    dist.all_reduce(flags, op=dist.ReduceOp.MIN)
    return {name: found[name] for name, flag in zip(names, flags.tolist()) if flag}


def cached_references(networks: dict[str, nn.Module], *, data: str, dataset, rows: range, resolution: int,
                      batches: Callable[[], Iterable], split: str = "train", cache_dir=None,
                      use_cache: bool | None = None, device="cpu") -> dict[str, ReferenceFeatures]:
    """The reference features of ``rows`` of ``dataset`` (loaded from ``data``'s ``split``) at ``resolution`` under
    each of ``networks`` ({features name: network}), from the cache (root ``cache_dir``, default
    :func:`~vqstack.evaluation.attributes.user_cache`) or computed now, all missing networks in one pass over
    ``batches()`` (the images of ``rows``, center-cropped to ``resolution``; under torch.distributed this process's
    contiguous shard), and cached by the main process. Every process calls it. ``info`` says which happened."""
    use_cache = cache_enabled(use_cache)
    keys = {name: reference_key(data, dataset, rows, resolution, split, name, net) for name, net in networks.items()}
    found = {}
    if use_cache:
        for name, key in keys.items():
            start = time.perf_counter()
            directory = reference_path(key, cache_dir)
            reference = read_reference(directory, key)
            if reference is not None:
                reference.info = {"path": str(directory), "computed_now": False,
                                  "seconds": round(time.perf_counter() - start, 2), "key": key}
                found[name] = reference
        found = _on_every_process(found, list(networks), device)
    missing = {name: network for name, network in networks.items() if name not in found}
    if missing:
        start = time.perf_counter()
        computed = compute_references(missing, batches(), device)
        seconds = time.perf_counter() - start
        for name, reference in computed.items():
            path = None
            if use_cache and _world()[0] == 0:
                path = write_reference(reference, reference_path(keys[name], cache_dir), keys[name], seconds, device)
            reference.info = {"path": str(path) if path else None, "computed_now": True,
                              "seconds": round(seconds, 1), "key": keys[name]}
        found.update(computed)
    for name in networks:
        logger.info(found[name].describe())
    return {name: found[name] for name in networks}


def build_network(features: str, fid_weights=None) -> nn.Module:
    """The registered ``features`` network, the FID network from ``fid_weights`` or the torch hub cache."""
    from ..core.plugins import registry
    from .weights import inception_weights

    if features == FID_FEATURES:
        return registry("features").build(features, weights=str(inception_weights(fid_weights)))
    return registry("features").build(features)


def reference_features(data, features: str = DEFAULT_FEATURES, *, resolution: int, split: str = "train",
                       limit: int | None = None, network: nn.Module | None = None, fid_weights=None,
                       cache_dir=None, use_cache: bool | None = None, batch_size: int = 32, num_workers: int = 0,
                       device="cpu") -> ReferenceFeatures:
    """The ``features`` network's features of the first ``limit`` images of ``data`` (all when None; images as
    ``--data`` takes them, ``split``) center-cropped to ``resolution``, as ``vqstack eval`` uses them: from the
    cache, or computed now and cached. ``ref.info["computed_now"]`` says which (also logged at INFO level).

    network     a ready-made network to use under the name ``features`` (tests pass stand-ins)
    fid_weights the InceptionV3 checkpoint for ``features="inception"``
    cache_dir   cache root instead of $VQSTACK_CACHE (default ~/.cache/vqstack)
    use_cache   False: neither read nor write the cache (default: on, unless $VQSTACK_NO_REFERENCE_CACHE is set)"""
    from ..data.images import ImageDataset, load_image_dataset

    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive int or None, got {limit!r}.")
    dataset = load_image_dataset(str(data), split=split)
    rows = range(min(limit, len(dataset)) if limit else len(dataset))
    network = (network if network is not None else build_network(features, fid_weights)).to(device)

    def batches():
        images = ImageDataset(dataset.select(rows) if limit else dataset, resolution, random_flip=False)
        return torch.utils.data.DataLoader(images, batch_size=batch_size, num_workers=num_workers)

    return cached_references({features: network}, data=str(data), dataset=dataset, rows=rows, resolution=resolution,
                             batches=batches, split=split, cache_dir=cache_dir, use_cache=use_cache,
                             device=device)[features]


def as_references(references) -> list[ReferenceFeatures] | None:
    """``references`` as a list when it is reference features (one, or a list / tuple / dict of them); None when it
    is something else (image batches)."""
    if isinstance(references, ReferenceFeatures):
        return [references]
    if isinstance(references, dict):
        references = list(references.values())
    if isinstance(references, (list, tuple)) and references and \
            all(isinstance(r, ReferenceFeatures) for r in references):
        return list(references)
    return None
