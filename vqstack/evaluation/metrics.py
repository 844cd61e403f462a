"""Metric objects: torchmetrics ``Metric`` subclasses that accumulate per batch and sync across processes.

torchmetrics provides PSNR and SSIM (fed [0, 1] images with data range 1, as the field computes them) and the
Fréchet distance (``FrechetInceptionDistance`` with a custom feature network); torch-fidelity the k-NN
precision/recall computation. What neither has is written here as thin Metrics: the mean of a perceptual distance,
the codebook histogram, the feature sets precision/recall need, a colour histogram distance and an attribute
classifier's confusion matrices. Under ``torch.distributed`` (``accelerate launch``) ``compute()`` sums or
concatenates every process's states first, so N processes each fed a different shard give the value one process
gives on the whole set.
"""
from __future__ import annotations

import torch
from torch import nn
from torchmetrics import MeanMetric, Metric
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.utilities import dim_zero_cat


def unit_range(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] images -> [0, 1], the range pixel metrics are defined on."""
    return (images.float() + 1) / 2


class PixelSSIM(StructuralSimilarityIndexMeasure):
    """SSIM (Wang et al. 2004; torchmetrics: Gaussian 11x11, sigma 1.5, K1 0.01, K2 0.03) of [-1, 1] images, computed
    on them mapped to [0, 1] with data range 1, as torchmetrics, scikit-image and the papers do, and averaged over
    images. Why not [-1, 1] with data range 2: SSIM's luminance term (2 mu_x mu_y + C1) / (mu_x² + mu_y² + C1) is not
    shift-invariant, and on [-1, 1] a dark image (mu near -1) hides a brightness error (0.97 instead of 0.60).

    ``update(fake, real)``; ``compute()`` -> scalar tensor."""

    def __init__(self, **kwargs):
        super().__init__(data_range=1.0, **kwargs)

    def update(self, fake: torch.Tensor, real: torch.Tensor) -> None:
        super().update(unit_range(fake), unit_range(real))


class PixelPSNR(PeakSignalNoiseRatio):
    """PSNR (dB) of [-1, 1] images, on them mapped to [0, 1] with data range 1 (the same value as [-1, 1] with data
    range 2: PSNR is shift-invariant), one per image, then averaged over images (not the PSNR of the pooled MSE).

    ``update(fake, real)``; ``compute()`` -> scalar tensor."""

    def __init__(self, **kwargs):
        super().__init__(data_range=1.0, dim=(1, 2, 3), reduction="elementwise_mean", **kwargs)

    def update(self, fake: torch.Tensor, real: torch.Tensor) -> None:
        super().update(unit_range(fake), unit_range(real))


class FrechetDistance(FrechetInceptionDistance):
    """Fréchet distance between the real and fake feature distributions of ``network`` (a feature network:
    images in [-1, 1] -> (B, F)), computed by torchmetrics' FID code. With the ``inception`` network this is FID;
    with any other it is a Fréchet distance on that network's features and must be named for it.

    ``update(images, real=True/False)``; ``compute()`` -> scalar tensor."""

    has_reference = False  # True once use_reference() gave the real side

    def __init__(self, network: nn.Module, **kwargs):
        super().__init__(feature=network, **kwargs)

    def use_reference(self, reference) -> None:
        """Take the real side from ``reference`` (:class:`~vqstack.evaluation.reference.ReferenceFeatures`: its
        ``sum``, ``cov_sum`` and ``count`` are this metric's own real states, computed elsewhere or cached), instead
        of feeding real images: ``update(real=True)`` then refuses them and ``reset()`` keeps the reference. Under
        torch.distributed (syncing on compute) process 0 holds it and the others zeros, so the sums synced in
        ``compute()`` are the reference's, once."""
        if tuple(reference.sum.shape) != tuple(self.real_features_sum.shape):
            raise ValueError(f"The reference features have {reference.sum.shape[0]} dimensions; this metric's network "
                             f"gives {self.real_features_sum.shape[0]}.")
        device = self.real_features_sum.device
        holder = _share(self)[0] == 0
        zeros = torch.zeros_like
        self.real_features_sum = reference.sum.to(device, torch.float64) if holder else zeros(self.real_features_sum)
        self.real_features_cov_sum = (reference.cov_sum.to(device, torch.float64) if holder
                                      else zeros(self.real_features_cov_sum))
        self.real_features_num_samples = torch.tensor(reference.count if holder else 0, dtype=torch.long,
                                                      device=device)
        self.reset_real_features = False  # torchmetrics' reset() then keeps the real states
        self.has_reference = True
        self._computed = None

    def update(self, imgs: torch.Tensor, real: bool) -> None:
        if real and self.has_reference:
            raise ValueError("This Fréchet distance takes its real side from reference features (use_reference); "
                             "feed it fake images only (real=False).")
        super().update(imgs, real)

    def compute(self) -> torch.Tensor:
        counts = int(self.real_features_num_samples), int(self.fake_features_num_samples)
        if min(counts) < 2:  # torchmetrics would raise a RuntimeError without saying how many it got
            raise ValueError(f"A Fréchet distance needs at least 2 real and 2 fake images; got {counts[0]} real and "
                             f"{counts[1]} fake. Evaluate more images.")
        return super().compute()


class PerceptualDistance(MeanMetric):
    """Mean over images of a perceptual distance ``network(fake, real)`` -> (B,) (LPIPS, ST-LPIPS).

    ``update(fake, real)``; ``compute()`` -> scalar tensor."""

    def __init__(self, network: nn.Module, **kwargs):
        super().__init__(nan_strategy="error", **kwargs)
        self.network = network

    def update(self, fake: torch.Tensor, real: torch.Tensor) -> None:
        super().update(self.network(fake, real))


class ColourHistogramDistance(MeanMetric):
    """Mean over image pairs of 1 - the intersection of their joint RGB histograms (``bins`` per channel, each
    histogram normalised to sum 1): 0 when both images use the same colours in the same amounts, 1 when they share
    none. Blind to where the colours are; a colour crossing a bin edge counts as a different colour.

    ``update(fake, real)`` with images (B, 3, H, W) in [-1, 1]; ``compute()`` -> scalar tensor."""

    def __init__(self, bins: int = 8, **kwargs):
        super().__init__(nan_strategy="error", **kwargs)
        self.bins = int(bins)

    def update(self, fake: torch.Tensor, real: torch.Tensor) -> None:
        overlap = torch.minimum(joint_histograms(fake, self.bins), joint_histograms(real, self.bins)).sum(1)
        super().update(1 - overlap)


def joint_histograms(images: torch.Tensor, bins: int) -> torch.Tensor:
    """(B, bins³) normalised joint RGB histograms of images (B, 3, H, W) in [-1, 1]."""
    levels = ((images.float().clamp(-1, 1) + 1) / 2 * bins).long().clamp_(max=bins - 1)
    cells = (levels[:, 0] * bins + levels[:, 1]) * bins + levels[:, 2]  # (B, H, W): one cell per pixel
    # one bincount for the whole batch: image b's cells are shifted by b * bins³
    offsets = torch.arange(len(images), device=images.device)[:, None] * bins ** 3
    counts = torch.bincount((cells.flatten(1) + offsets).flatten(), minlength=len(images) * bins ** 3)
    counts = counts.view(len(images), -1).float()
    return counts / counts.sum(1, keepdim=True)


class AttributeConfusion(Metric):
    """Confusion matrices of a frozen ``classifier`` (images -> logits over ``num_classes``) on originals and on
    their reconstructions, for the same images and tags.

    ``update(fake, real, labels)``; ``compute()`` -> long (2, C, C): [0] originals, [1] reconstructions; rows are
    the tags, columns the predictions."""

    full_state_update = False

    def __init__(self, classifier: nn.Module, num_classes: int, **kwargs):
        super().__init__(**kwargs)
        self.classifier, self.num_classes = classifier.eval(), int(num_classes)
        self.add_state("confusion", torch.zeros(2, num_classes, num_classes, dtype=torch.long), dist_reduce_fx="sum")

    @torch.no_grad()
    def update(self, fake: torch.Tensor, real: torch.Tensor, labels: torch.Tensor) -> None:
        for i, images in enumerate((real, fake)):
            predicted = self.classifier(images).argmax(1)
            cells = labels.long() * self.num_classes + predicted
            self.confusion[i] += torch.bincount(cells, minlength=self.num_classes ** 2).view_as(self.confusion[i])

    def compute(self) -> torch.Tensor:
        return self.confusion


class CodebookUsage(Metric):
    """How much of the codebook a whole set of token grids uses.

    ``update(indices)`` with long (B, h, w) grids, or (B, h, w, Q) for ``num_codebooks`` = Q codebooks.
    ``compute()`` -> {"usage": fraction of the codes used at least once, "perplexity": exp(entropy) of the code
    histogram}, both averaged over the codebooks (each codebook has its own histogram)."""

    full_state_update = False

    def __init__(self, codebook_size: int, num_codebooks: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.codebook_size, self.num_codebooks = int(codebook_size), int(num_codebooks)
        self.add_state("counts", torch.zeros(self.num_codebooks, self.codebook_size, dtype=torch.long),
                       dist_reduce_fx="sum")

    def update(self, indices: torch.Tensor) -> None:
        per_position = indices.dim() == 4  # (B, h, w, Q)
        if indices.is_floating_point() or (indices.shape[-1] if per_position else 1) != self.num_codebooks:
            raise ValueError(f"CodebookUsage(num_codebooks={self.num_codebooks}) takes integer token grids "
                             f"(B, h, w){' x Q' if per_position else ''}; got {indices.dtype} {tuple(indices.shape)}.")
        flat = indices.reshape(-1, self.num_codebooks).long()
        if flat.numel() and (flat.min() < 0 or flat.max() >= self.codebook_size):
            raise ValueError(f"Token ids must lie in [0, {self.codebook_size}); got [{int(flat.min())}, "
                             f"{int(flat.max())}]: is codebook_size the tokenizer's?")
        # one bincount for all codebooks: codebook q's ids are shifted by q * codebook_size
        offsets = torch.arange(self.num_codebooks, device=flat.device) * self.codebook_size
        counts = torch.bincount((flat + offsets).reshape(-1), minlength=self.counts.numel())
        self.counts += counts.view_as(self.counts)

    def compute(self) -> dict[str, torch.Tensor]:
        counts = self.counts.double()
        probs = counts / counts.sum(1, keepdim=True).clamp_min(1)
        perplexity = torch.special.entr(probs).sum(1).exp()  # entr(p) = -p log p, 0 at p = 0
        return {"usage": (counts > 0).double().mean(), "perplexity": perplexity.mean()}


class PrecisionRecall(Metric):
    """Improved precision and recall (Kynkäänniemi et al., NeurIPS 2019) in the feature space of ``network``.

    Each real (fake) feature gets a ball reaching its k-th nearest real (fake) neighbour. Precision: the fraction of
    fake images inside some real ball (fidelity); recall: the fraction of real images inside some fake ball
    (coverage). torch-fidelity computes them from the features collected here.

    ``update(images, real=True/False)``; ``compute()`` -> {"precision", "recall"}."""

    full_state_update = False

    def __init__(self, network: nn.Module, k: int = 3, **kwargs):
        super().__init__(**kwargs)
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k (neighbourhood size) must be an int >= 1, got {k!r}.")
        self.network, self.k = network, k
        self.add_state("real_features", [], dist_reduce_fx="cat")
        self.add_state("fake_features", [], dist_reduce_fx="cat")

    has_reference = False  # True once use_reference() gave the real features

    def use_reference(self, reference) -> None:
        """Take the real features from ``reference`` (:class:`~vqstack.evaluation.reference.ReferenceFeatures`)
        instead of feeding real images: ``update(real=True)`` then refuses them and ``reset()`` keeps them. Under
        torch.distributed (syncing on compute) each process holds its share, concatenated in ``compute()``."""
        rank, world = _share(self)
        self.real_features = [reference.features.tensor_split(world)[rank].to(self.device, torch.float32)]
        self.has_reference = True
        self._computed = None

    def update(self, images: torch.Tensor, real: bool) -> None:
        if real and self.has_reference:
            raise ValueError("Precision/recall takes its real features from a reference (use_reference); feed it "
                             "fake images only (real=False).")
        (self.real_features if real else self.fake_features).append(self.network(images).float())

    def reset(self) -> None:
        kept = self.real_features if self.has_reference else None
        super().reset()
        if kept is not None:
            self.real_features = kept

    def compute(self) -> dict[str, torch.Tensor]:
        from torch_fidelity.metric_prc import calculate_precision_recall_part

        real, fake = _collected(self.real_features), _collected(self.fake_features)
        if min(len(real), len(fake)) <= self.k:
            raise ValueError(f"Precision/recall with k={self.k} needs more than {self.k} real and fake images; got "
                             f"{len(real)} real and {len(fake)} fake.")
        # torch-fidelity's argument order: generated first, real second
        precision, recall = calculate_precision_recall_part(fake, real, neighborhood=self.k)
        return {"precision": torch.tensor(precision), "recall": torch.tensor(recall)}


def _share(metric: Metric) -> tuple[int, int]:
    """(rank, world) among which ``metric``'s states are summed or concatenated in ``compute()``: (0, 1) unless
    torch.distributed is running and the metric syncs."""
    if metric.sync_on_compute and torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _collected(state) -> torch.Tensor:
    """A "cat" state as one (N, F) tensor: a list before syncing, a tensor after; empty when nothing came."""
    if isinstance(state, list) and not state:
        return torch.zeros(0, 0)
    return dim_zero_cat(state)
