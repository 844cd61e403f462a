"""Evaluating a tokenizer: encode and decode every image, compare the reconstructions with the originals.

    values = evaluate_tokenizer(tokenizer, batches, ["psnr", "ssim", "stlpips", "fd-vgg", "usage"])
    values = evaluate_tokenizer(tokenizer, batches, ["psnr", "attr:hair"], data="../shared/data/anime-faces")
"""
from __future__ import annotations

from collections.abc import Iterable

import torch

from .attributes import attribute_fidelity
from .catalog import DEFAULT_FEATURES, DEFAULT_METRICS, TOKENIZER, attribute_columns, parse_metrics
from .suite import MetricSuite, build_suite
from .tokenizer_info import codebook_layout, tokenizer_resolution

__all__ = ["codebook_layout", "evaluate_suite", "evaluate_tokenizer", "pixels", "tokenizer_resolution",
           "tokenizer_suite", "update_reconstruction"]  # tokenizer_resolution: callers have imported it from here


def pixels(batch) -> torch.Tensor:
    """An image batch (B, 3, H, W) in [-1, 1], given as a tensor or as an ImageDataset batch dict."""
    return batch["pixel_values"] if isinstance(batch, dict) else batch


def tokenizer_suite(tokenizer, metrics=DEFAULT_METRICS[TOKENIZER], **options) -> MetricSuite:
    """:func:`build_suite` with the tokenizer's codebook layout filled in (for ``usage``)."""
    codebook_size, num_codebooks = codebook_layout(tokenizer)
    return build_suite(metrics, codebook_size=codebook_size, num_codebooks=num_codebooks, **options)


@torch.no_grad()
def update_reconstruction(suite: MetricSuite, tokenizer, images: torch.Tensor) -> None:
    """Feed one batch: tokens (usage), reconstruction vs original (pairs) and both image sets (Fréchet distances)."""
    tokens = tokenizer.encode(images)
    recon = tokenizer.decode(tokens)  # clamped to [-1, 1], as an image written to a file would be
    suite.update_pairs(recon, images)
    suite.update_sets(images, real=True)
    suite.update_sets(recon, real=False)
    suite.update_tokens(tokens)


def evaluate_tokenizer(tokenizer, batches: Iterable, metrics=DEFAULT_METRICS[TOKENIZER], *, data=None,
                       split: str = "train", resolution: int | None = None, cache_dir=None, references=None,
                       **options) -> dict[str, float]:
    """Reconstruction metrics of ``tokenizer`` over ``batches`` (tensors (B, 3, H, W) in [-1, 1] or ImageDataset
    batch dicts) -> {name: value}.

    ``metrics`` is a list of names (``options`` go to :func:`build_suite`) or a ready :class:`MetricSuite`. Under
    ``torch.distributed`` give each process its own shard of the images: the values are synced over all of them.

    ``attr:<column>`` metrics need ``data`` (images with tags, as ``--data`` takes them; ``split``): they score the
    held-out tagged images of ``data`` at ``resolution`` (default: the tokenizer's), not ``batches``, and add their
    flat numbers (``attr:<column>/real``, ...); the classifier is cached under the cache root ``cache_dir`` (default
    $VQSTACK_CACHE, else ~/.cache/vqstack).
    :func:`~vqstack.evaluation.attributes.attribute_fidelity` gives the per-class report too.

    ``references``: the real side of the Fréchet distances and precision/recall ready-made
    (:class:`~vqstack.evaluation.reference.ReferenceFeatures` of exactly the images ``batches`` holds, e.g. from
    :func:`~vqstack.evaluation.reference.reference_features` with the same data, limit and resolution; one or a
    list): the feature network then runs on the reconstructions only."""
    if isinstance(metrics, MetricSuite):
        return evaluate_suite(tokenizer, batches, metrics, references)
    requests = parse_metrics(metrics, options.get("features", DEFAULT_FEATURES))
    columns = attribute_columns(requests)
    if columns and data is None:
        raise ValueError(f"attr:{columns[0]} scores a tagged data set: pass data= (its images and tags, as --data "
                         f"takes them).")
    others = [request.key for request in requests if request.metric != "attr"]
    values = (evaluate_suite(tokenizer, batches, tokenizer_suite(tokenizer, others, **options), references)
              if others else {})
    for column in columns:
        values.update(attribute_fidelity(tokenizer, data, column, resolution=resolution, split=split,
                                         cache_dir=cache_dir).values)
    return values


def evaluate_suite(tokenizer, batches: Iterable, suite: MetricSuite, references=None) -> dict[str, float]:
    """Feed every batch to ``suite`` and compute it (``references``: see :func:`evaluate_tokenizer`)."""
    device = next(tokenizer.parameters()).device
    suite.to(device)
    if references is not None:
        from .reference import as_references

        given = as_references(references)
        if given is None:
            raise ValueError(f"references must be ReferenceFeatures (one, or a list of them), got "
                             f"{type(references).__name__}.")
        suite.use_references(given)
    for batch in batches:
        update_reconstruction(suite, tokenizer, pixels(batch).to(device))
    return suite.compute()
