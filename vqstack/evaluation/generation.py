"""Evaluating a prior: sample images with a Pipeline and compare them with reference images; score token data.

    fake = sample_images(pipe, 1000, labels="blue hair", cfg_scale=3.0, seed=0)
    values = evaluate_samples(fake, reference_batches, ["fd-vgg", "precision", "recall"])
    values = evaluate_samples(fake, reference_features(data, resolution=64), ["fd-vgg"])  # the real side cached
    nll = token_nll(prior, sequences, labels)
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch

from ..core.modes import evaluating
from .catalog import DEFAULT_METRICS, PRIOR
from .reconstruction import pixels
from .suite import MetricSuite, build_suite


def chunk_seed(seed: int, chunk: int) -> int:
    """The seed of sample chunk ``chunk``: independent streams per chunk, so the images are the same however the
    chunks are spread over processes."""
    return int(np.random.SeedSequence([seed, chunk]).generate_state(1, dtype=np.uint64)[0] >> 1)


def labels_for(labels, start: int, count: int):
    """The labels of samples ``start .. start+count``: one label for all, or a list cycled over the samples."""
    if isinstance(labels, (list, tuple)):
        return [labels[(start + i) % len(labels)] for i in range(count)]
    return labels


def image_pixels(image) -> torch.Tensor:
    """One PIL image -> (3, H, W) in [-1, 1]: its 8-bit RGB values v as v / 127.5 - 1. Sampled images and images
    read from a folder (``vqstack eval --samples``) both go through here, so the same pixels give the same values."""
    from torchvision.transforms.functional import pil_to_tensor

    return pil_to_tensor(image.convert("RGB")).float() / 127.5 - 1


def to_tensor(images) -> torch.Tensor:
    """PIL images of one size -> (B, 3, H, W) in [-1, 1]."""
    return torch.stack([image_pixels(image) for image in images])


def sample_images(pipeline, n: int, labels=None, *, batch_size: int = 32, seed: int = 0, rank: int = 0,
                  world: int = 1, **sampling) -> Iterator[torch.Tensor]:
    """Sample ``n`` images with ``pipeline`` (a :class:`vqstack.Pipeline`) in chunks of ``batch_size``, chunk i from
    seed ``chunk_seed(seed, i)``; yield this process's chunks (i % world == rank) as (B, 3, H, W) in [-1, 1].

    ``sampling``: cfg_scale, temperature, top_k, top_p, steps, as the pipeline takes them. The images pass through 8-bit
    PIL images, as samples saved to files and scored by other tools do."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"The number of samples must be a positive int, got {n!r}.")
    for chunk, start in enumerate(range(0, n, batch_size)):
        if chunk % world != rank:
            continue
        count = min(batch_size, n - start)
        yield to_tensor(pipeline(count, labels=labels_for(labels, start, count), seed=chunk_seed(seed, chunk),
                                 batch_size=count, **sampling))


@torch.no_grad()
def evaluate_samples(samples: Iterable, references: Iterable, metrics=DEFAULT_METRICS[PRIOR], device="cpu",
                     **options) -> dict[str, float]:
    """Distribution metrics of generated ``samples`` against ``references`` -> {name: value}. ``samples``: an
    iterable of image batches in [-1, 1]; ``references``: the same, or the real side ready-made and no image read:
    :class:`~vqstack.evaluation.reference.ReferenceFeatures` (from :func:`~vqstack.evaluation.reference.
    reference_features`, cached), one per features network the metrics use (a list or dict of them for several).
    ``metrics``: names (``options`` go to :func:`build_suite`) or a MetricSuite."""
    from .reference import as_references

    suite = metrics if isinstance(metrics, MetricSuite) else build_suite(metrics, **options)
    suite.to(device)
    given = as_references(references)
    if given is not None:
        suite.use_references(given)
        references = ()
    for batch in references:
        suite.update_sets(pixels(batch).to(device), real=True)
    for batch in samples:
        suite.update_sets(pixels(batch).to(device), real=False)
    return suite.compute()


@torch.no_grad()
def token_nll(prior, sequences: torch.Tensor, labels: list | None = None, batch_size: int = 64,
              sync_on_compute: bool = True) -> float:
    """Mean per-token negative log-likelihood (nats) of ``sequences`` (N, seq_len) under an autoregressive
    ``prior``, each under its own label (``labels``: one per sequence, or None for the null condition); summed over
    processes."""
    if not getattr(prior, "causal", False):
        raise ValueError(f"nll is the next-token likelihood of an autoregressive prior (ar); "
                         f"{type(prior).__name__} is not one: measure its samples with fd-vgg instead.")
    return mean_prior_loss(prior, sequences, labels, batch_size, sync_on_compute)


def mean_prior_loss(prior, sequences: torch.Tensor, labels: list | None = None, batch_size: int = 64,
                    sync_on_compute: bool = True, images: torch.Tensor | None = None) -> float:
    """The prior's own training loss on ``sequences`` in eval mode, averaged per token: the per-token NLL for ar,
    the masked-token cross-entropy (at the masks its forward draws) for a masked prior such as maskgit. ``images``:
    each sequence's condition image, for a prior with an image condition (None: the null image)."""
    from torchmetrics import MeanMetric

    device = next(prior.parameters()).device
    mean = MeanMetric(nan_strategy="error", sync_on_compute=sync_on_compute).to(device)
    with evaluating(prior):  # no condition dropout
        for start in range(0, len(sequences), batch_size):
            batch = sequences[start:start + batch_size].to(device)
            batch_labels = None if labels is None else labels[start:start + batch_size]
            extra = {} if images is None else {"image": images[start:start + batch_size]}
            mean.update(prior(batch, labels=batch_labels, **extra).loss.float(), weight=batch.numel())
    return float(mean.compute())


def sequence_labels(prior, rows, label_columns: list[str]) -> list | None:
    """Each token row's condition as the prior recipes train it: a class id from the one label column, the row's
    {group: value} tags for an attribute prior (None values are that group's null), None for an unconditional one."""
    mode = prior.conditions.mode
    if mode == "unconditional":
        return None
    if mode == "class":
        if not label_columns or label_columns[0] not in rows.column_names:
            raise ValueError(f"The prior is class-conditional but the token dataset records no class column "
                             f"(label columns: {label_columns or 'none'}).")
        return [int(value) for value in rows[label_columns[0]]]
    groups = [group for group, _ in prior.conditions.groups if group in rows.column_names]
    if not groups:
        raise ValueError(f"The prior is conditioned on {[g for g, _ in prior.conditions.groups]} but the token "
                         f"dataset has none of these columns (it has {rows.column_names}).")
    return list(rows.select_columns(groups))
