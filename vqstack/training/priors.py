"""What training a prior over a tokenizer's tokens needs besides the loop: the encoded token set (made once,
reused while its inputs are unchanged), each row's condition, the class count, a fixed held-out split, the held-out
loss and the exported ``prior/`` folder. The prior recipes (and any recipe that trains a prior) share them."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..core.files import publish_dir, staging_dir
from ..core.serialization import save_component
from ..data import load_image_dataset
from ..data.labels import relabel
from ..data.token_cache import check_token_cache, token_cache_key
from ..data.tokens import INFO_NAME, encode_dataset, load_token_dataset
from ..evaluation.generation import mean_prior_loss
from .runtime import UsageError

# transformer sizes of the prior recipes (recipes/prior_anime.py, recipes/translate_anime.py)
PRESETS = {
    "tiny": {"dim": 64, "depth": 2, "heads": 2, "batch_size": 32, "lr": 1e-3},
    "small": {"dim": 256, "depth": 4, "heads": 4, "batch_size": 64, "lr": 1e-3},  # ~3M parameters: CPU runs
    "base": {"dim": 512, "depth": 8, "heads": 8, "batch_size": 64, "lr": 3e-4},  # ~25M parameters
}


def condition_of(row: dict, attributes: list[str], class_column: str | None):
    """A data row's condition as the prior takes it: a class id, a tag string, or None (null condition)."""
    if class_column:
        return int(row[class_column])
    tags = [f"{row[a]} {a}" for a in attributes if row.get(a)]
    return ",".join(tags) if tags else None


def class_sizes(class_names: str | None, classes) -> dict:
    """``num_classes`` (and ``class_names``) of a class-conditional prior: as many as the names when they are given,
    so shards holding some classes only still train a prior for all of them; else the largest class id seen + 1."""
    seen = int(max(classes)) + 1
    if not class_names:
        return {"num_classes": seen}
    names = [name.strip() for name in class_names.split(",")]
    if seen > len(names):
        raise UsageError(f"The data holds class id {seen - 1}, but --class-names names {len(names)} classes "
                         f"({', '.join(names)}).")
    return {"num_classes": len(names), "class_names": names}


def check_new_tags(images, relabelled, columns: list[str], metadata) -> None:
    """Refuse --metadata tags that the data's own column never uses (a typo, or hair and eye columns swapped)."""
    for column in columns:
        if column not in images.column_names:
            continue
        known = {v for v in images[column] if v is not None}
        unknown = sorted({v for v in relabelled[column] if v is not None} - known, key=str)
        if known and unknown:
            raise UsageError(f"{metadata}: {column} tags {unknown} are not among the data's {column} values "
                             f"({', '.join(sorted(map(str, known)))}). Fix the file, or pass --new-tags to use a "
                             f"new set of values.")


def prepare_tokens(tokens_dir, tokenizer, tokenizer_dir, data: str, accelerator, resolution: int,
                   label_columns: list[str], metadata=None, new_tags: bool = False, rebuild: bool = False):
    """The encoded data set ``(tokens, info)`` in ``tokens_dir``: reused when made from the same inputs (the
    tokenizer's weights, the data, ``metadata``, the resolution, the label columns), refused when made from others
    unless ``rebuild``, encoded (once, sharded over the processes) otherwise."""
    tokens_dir = Path(tokens_dir)
    key = token_cache_key(tokenizer_dir, data, resolution, label_columns, metadata)
    if (tokens_dir / INFO_NAME).is_file() and not rebuild:
        check_token_cache(tokens_dir, key)
        return load_token_dataset(tokens_dir)
    with accelerator.main_process_first():
        images = load_image_dataset(data)
        if metadata:
            relabelled = relabel(images, metadata)
            if not new_tags:
                check_new_tags(images, relabelled, label_columns, metadata)
            images = relabelled
    missing = [c for c in label_columns if c not in images.column_names]
    if missing:
        raise UsageError(f"--data has no column {missing}; its columns: {', '.join(images.column_names)}.")
    return encode_dataset(tokenizer, images, tokens_dir, resolution, accelerator, label_columns,
                          info={"tokenizer_path": str(tokenizer_dir), **key}, source=data)


def split_validation(n: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(training rows, held-out rows): ``fraction`` of ``n`` held out, the same rows for the same seed."""
    if not 0 <= fraction < 0.5:
        raise UsageError(f"--val-fraction must be in [0, 0.5), got {fraction}.")
    count = min(n - 1, max(1, round(n * fraction))) if fraction > 0 else 0
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[count:].sort().values, order[:count].sort().values


def validation_loss(prior, sequences: torch.Tensor, conditions: list, batch_size: int, accelerator,
                    images: torch.Tensor | None = None) -> float:
    """Mean per-token loss of the held-out sequences on this (the main) process: the NLL (nats), computed as
    ``vqstack eval`` computes ``nll``, for an autoregressive prior; the masked-token cross-entropy for a masked one
    (maskgit). ``images``: the sequences' condition images, for a translator."""
    with accelerator.autocast():
        return mean_prior_loss(prior, sequences, conditions, batch_size, sync_on_compute=False, images=images)


def export_prior(prior, info: dict, output_dir: Path) -> None:
    """prior/ with the token info beside the weights (Pipeline warns when given another tokenizer), replaced
    only once complete."""
    final = output_dir / "prior"
    staging = staging_dir(final)
    save_component(prior, staging)
    (staging / INFO_NAME).write_text(json.dumps(info, indent=2) + "\n")
    publish_dir(staging, final)
