"""Token datasets: images encoded once by a frozen tokenizer, stored with their labels as Arrow on disk, so
training a prior never runs the encoder again."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from ..core.files import publish_dir, staging_dir
from .images import SKIP_REASONS, DataError, ImageDataset, SkipTally, check_readable, skip_reason

INFO_NAME = "tokens_info.json"


def check_single_codebook(tokenizer, name: str = "the tokenizer") -> None:
    """Refuse a tokenizer whose quantizer gives several tokens per grid cell (residual, grouped): a prior models
    one token per cell. ``name`` says which tokenizer in the message (e.g. "the tokenizer in runs/x")."""
    probe = torch.zeros(1, 3, tokenizer.downsample * 2, tokenizer.downsample * 2)
    probe = probe.to(next(tokenizer.parameters()).device)
    tokens = tokenizer.encode(probe)
    if tokens.dim() != 3:
        raise ValueError(
            f"The quantizer of {name} ({type(tokenizer.quantizer).__name__}) gives several tokens per position "
            f"({tokens.shape[-1]} codebooks); the prior models one. Train the tokenizer with a single-codebook "
            f"quantizer (vq, ema, fsq, lfq) for stage 2.")


class EveryRow(torch.utils.data.Dataset):
    """Each row of an :class:`ImageDataset` as it is: its pixels, or zeros and a skip reason when it cannot be read
    (encoding leaves such rows out, where training would replace them by the next readable one)."""

    def __init__(self, samples: ImageDataset):
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, row: int) -> dict:
        counts = torch.zeros(len(SKIP_REASONS), dtype=torch.long)
        try:
            pixels = self.samples.pixels(row)
        except Exception as err:  # counted by reason; the caller drops the row
            counts[SKIP_REASONS.index(skip_reason(err))] = 1
            size = self.samples.transform.resolution
            pixels = torch.zeros(3, size, size)
        return {"pixel_values": pixels, "skip_counts": counts, "index": row}


@torch.no_grad()
def encode_dataset(tokenizer, images, directory, resolution: int, accelerator, label_columns=(),
                   batch_size: int = 64, num_workers: int = 0, info: dict | None = None, source: str | None = None):
    """Encode every image of the 🤗 dataset ``images`` (center-cropped to ``resolution``, no flips) with the
    frozen ``tokenizer`` and save ``tokens`` (h*w ints, raster order) plus the ``label_columns`` to ``directory``,
    with ``info`` (what the tokens were made from) added to its tokens_info.json.

    Unreadable images are left out and counted per reason in tokens_info.json (``skipped_images``,
    ``skipped/<reason>``); a data set with nothing readable raises DataError naming ``source`` (the --data value).
    Each process encodes a contiguous shard and writes it; the main process joins the shards in order. Returns
    the dataset and its info, loaded on every process."""
    from datasets import Dataset, Features, Sequence, Value, concatenate_datasets, load_from_disk

    check_single_codebook(tokenizer)
    tokenizer.eval().to(accelerator.device)
    directory = Path(directory)
    shards_dir = directory.with_name(directory.name + ".shards")
    if accelerator.is_main_process:
        shutil.rmtree(shards_dir, ignore_errors=True)  # left by a run that crashed while encoding
    accelerator.wait_for_everyone()
    check_readable(ImageDataset(images, resolution, random_flip=False), source)  # nothing readable: stop now
    shard = images.shard(num_shards=accelerator.num_processes, index=accelerator.process_index, contiguous=True)
    loader = torch.utils.data.DataLoader(EveryRow(ImageDataset(shard, resolution, random_flip=False)),
                                         batch_size=batch_size, num_workers=num_workers)
    labels = shard.select_columns(list(label_columns)) if label_columns else None
    # the first row of this process's shard in ``images``, as datasets' contiguous sharding splits it
    share, extra = divmod(len(images), accelerator.num_processes)
    first = share * accelerator.process_index + min(accelerator.process_index, extra)
    rows = {"tokens": [], "row": [], **{c: [] for c in label_columns}}
    grid, tally = None, SkipTally()
    for batch in loader:
        tally.add(batch)
        readable = batch["skip_counts"].sum(1) == 0
        tokens = tokenizer.encode(batch["pixel_values"][readable].to(accelerator.device))
        grid = tuple(tokens.shape[1:])
        rows["tokens"] += tokens.flatten(1).cpu().tolist()
        rows["row"] += (batch["index"][readable] + first).tolist()  # the image each token row encodes
        if labels is not None:
            picked = labels[batch["index"][readable].tolist()]
            for column in label_columns:
                rows[column] += picked[column]
    skipped = SkipTally(accelerator.reduce(tally.counts.to(accelerator.device), "sum"))
    if skipped.total:
        accelerator.print(f"encoding {source or 'the images'}: {skipped.message()}; they are left out")
    shard_dir = shards_dir / f"{accelerator.process_index:05d}"
    features = Features({"tokens": Sequence(Value("int32")), "row": Value("int64"),
                         **{c: images.features[c] for c in label_columns}})
    Dataset.from_dict(rows, features=features).save_to_disk(str(shard_dir))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shards = sorted(shards_dir.iterdir())
        merged = concatenate_datasets([load_from_disk(str(p)) for p in shards])
        staging = staging_dir(directory)
        save_token_dataset(merged, staging, grid, tokenizer.quantizer.codebook_size, **(info or {}),
                           **skipped.as_dict())
        publish_dir(staging, directory)  # an older token set is replaced only by a complete new one
        shutil.rmtree(shards_dir)  # the joined copy is on disk; the shards were only for joining
    accelerator.wait_for_everyone()
    return load_token_dataset(directory)


def source_rows(tokens, info: dict, where) -> list[int]:
    """The row of the image data set that each token row encodes (unreadable images are left out, so they may
    differ). Token sets saved before rows were recorded hold none: then the rows are 0..n-1 when no image was
    skipped, and otherwise the tokens must be encoded again."""
    if "row" in tokens.column_names:
        return tokens["row"]
    if info.get("skipped_images", 0):
        raise DataError(f"{where} was encoded before token rows named their images, and {info['skipped_images']} "
                        f"unreadable images were left out, so its rows cannot be matched to the images: encode them "
                        f"again (--rebuild-tokens).")
    return list(range(len(tokens)))


def save_token_dataset(dataset, directory, grid, codebook_size: int, **info) -> Path:
    directory = Path(directory)
    dataset.save_to_disk(str(directory))
    (directory / INFO_NAME).write_text(json.dumps({"grid": list(grid), "codebook_size": codebook_size, **info},
                                                  indent=2))
    return directory


def load_token_dataset(directory):
    """``(dataset, info)`` saved by :func:`save_token_dataset`; info has ``grid`` and ``codebook_size``. The tokens
    are checked to lie in [0, codebook_size) here, once, so a training step need not read them back to check."""
    from datasets import load_from_disk

    directory = Path(directory)
    if not (directory / INFO_NAME).is_file():
        raise FileNotFoundError(f"{directory} holds no token dataset ({INFO_NAME} missing).")
    dataset, info = load_from_disk(str(directory)), json.loads((directory / INFO_NAME).read_text())
    check_token_range(dataset, info["codebook_size"], directory)
    return dataset, info


def check_token_range(dataset, codebook_size: int, where) -> None:
    """Refuse a token dataset holding ids outside [0, codebook_size): Arrow's min/max, no Python lists."""
    import pyarrow.compute as pc

    if not len(dataset):
        return
    bounds = pc.min_max(pc.list_flatten(dataset.data.column("tokens"))).as_py()
    if bounds["min"] is not None and (bounds["min"] < 0 or bounds["max"] >= codebook_size):
        raise DataError(f"{where}: tokens span [{bounds['min']}, {bounds['max']}] but {INFO_NAME} says "
                        f"codebook_size={codebook_size}; encode the images again (--rebuild-tokens).")
