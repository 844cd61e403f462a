"""A set of named metrics fed by role, and the builder that makes one from metric names.

    suite = build_suite(["psnr", "fd-vgg", "usage"], codebook_size=1024)
    suite.update_pairs(recon, images)            # psnr, ssim, lpips, stlpips, colour-hist: (fake, real) pairs
    suite.update_sets(images, real=True)         # Fréchet distances, precision/recall: two image sets
    suite.update_sets(recon, real=False)
    suite.update_tokens(tokens)                  # usage / perplexity
    suite.compute()                              # {"psnr": ..., "fd-vgg": ..., "usage": ..., "perplexity": ...}
    suite.networks                               # {"fd-vgg": "ST-LPIPS VGG16 (ImageNet, ...) ..."}

    suite.use_reference(reference_features(data, "vgg16-stlpips", resolution=64))   # the real side, cached:
    suite.update_sets(samples, real=False)       # update_sets(real=True) then skips fd-vgg and precision/recall
"""
from __future__ import annotations

import torch
from torch import nn

from ..core.plugins import registry
from .catalog import DEFAULT_FEATURES, FID_FEATURES, parse_metrics
from .features import SharedFeatures
from .weights import inception_weights, lpips_backbone_weights

STLPIPS_DESCRIPTION = ("ST-LPIPS, VGG16 (shift-tolerant LPIPS; ImageNet-trained backbone and calibrated layers "
                       "shipped by stlpips-pytorch, vST0.0): not LPIPS")


class MetricSuite(nn.Module):
    """Named torchmetrics metrics grouped by what they are fed. ``compute()`` syncs them across processes (unless
    built with ``sync_on_compute=False``) and returns plain floats; ``networks`` says which network each distance
    used. An ``nn.Module``, so ``suite.to(device)`` moves every metric and network."""

    def __init__(self, pairs: dict | None = None, sets: dict | None = None, tokens: dict | None = None,
                 networks: dict[str, str] | None = None, set_features: dict[str, str] | None = None,
                 feature_networks: dict[str, nn.Module] | None = None):
        super().__init__()
        self.pairs = nn.ModuleDict(pairs or {})  # update(fake, real)
        self.sets = nn.ModuleDict(sets or {})  # update(images, real=bool)
        self.tokens = nn.ModuleDict(tokens or {})  # update(indices)
        self.networks = dict(networks or {})
        self.set_features = dict(set_features or {})  # sets key -> features name ("fd-vgg" -> "vgg16-stlpips")
        # features name -> the network instance the sets metrics share (a plain dict: they own it as a submodule)
        self.feature_networks = dict(feature_networks or {})

    @property
    def reference_networks(self) -> list[str]:
        """The features networks whose real-image features the sets metrics need (what
        :meth:`use_reference` can take from a cache)."""
        return sorted(set(self.set_features.values()))

    def use_reference(self, reference) -> None:
        """Give every sets metric on ``reference.network`` its real side from ``reference``
        (:class:`~vqstack.evaluation.reference.ReferenceFeatures`, e.g. cached); real images are then no longer
        fed to them. The reference must come from the same network (class, description, weights) as this suite's."""
        keys = [key for key, name in self.set_features.items() if name == reference.network]
        if not keys:
            raise ValueError(f"No metric of this suite uses the {reference.network!r} features (it uses "
                             f"{', '.join(self.reference_networks) or 'none'}).")
        made_with = (reference.info or {}).get("key")
        network = self.feature_networks.get(reference.network)
        if made_with and network is not None:
            from .reference import network_identity

            ours = network_identity(reference.network, network)
            differ = [name for name, value in ours.items() if made_with.get(name) != value]
            if differ:
                raise ValueError(f"The reference features of {reference.network!r} were computed with another "
                                 f"network ({', '.join(differ)} differ: {made_with.get('network_description')!r} "
                                 f"against this suite's {ours['network_description']!r}).")
        for key in keys:
            self.sets[key].use_reference(reference)

    def use_references(self, references) -> None:
        """:meth:`use_reference` for each of ``references``; every features network the sets metrics use must get
        one (a metric fed no real image would fail later, less clearly)."""
        for reference in references:
            self.use_reference(reference)
        missing = sorted(set(self.reference_networks) - {reference.network for reference in references})
        if missing:
            raise ValueError(f"No reference features given for {', '.join(missing)} (given: "
                             f"{', '.join(r.network for r in references)}); pass one per features network.")

    def update_pairs(self, fake: torch.Tensor, real: torch.Tensor) -> None:
        for metric in self.pairs.values():
            metric.update(fake, real)

    def update_sets(self, images: torch.Tensor, real: bool) -> None:
        """Feed an image set; real images skip the metrics that took their real side from :meth:`use_reference`
        (their network does not run on them)."""
        for metric in self.sets.values():
            if not (real and getattr(metric, "has_reference", False)):
                metric.update(images, real=real)

    def update_tokens(self, indices: torch.Tensor) -> None:
        for metric in self.tokens.values():
            metric.update(indices)

    def compute(self) -> dict[str, float]:
        """Every metric's value as a float; a metric returning several values (usage and perplexity, precision and
        recall) reports each under its own name."""
        values = {}
        for name, metric in [*self.pairs.items(), *self.sets.items(), *self.tokens.items()]:
            result = metric.compute()
            results = result if isinstance(result, dict) else {name: result}
            values.update({key: float(value) for key, value in results.items()})
        return values

    def reset(self) -> None:
        for metric in [*self.pairs.values(), *self.sets.values(), *self.tokens.values()]:
            metric.reset()


def build_suite(metrics, *, features: str = DEFAULT_FEATURES, codebook_size: int | None = None,
                num_codebooks: int = 1, fid_weights=None, lpips_weights=None, lpips_net: str = "alex", k: int = 3,
                networks: dict[str, nn.Module] | None = None, sync_on_compute: bool = True) -> MetricSuite:
    """A :class:`MetricSuite` for ``metrics`` (names or "a,b,c"; see ``vqstack eval --help``).

    features        network of ``fd`` and precision/recall (a ``features`` registry name)
    codebook_size   the tokenizer's, for ``usage`` (``num_codebooks`` > 1 for residual/grouped quantizers)
    fid_weights     InceptionV3 checkpoint for rfid/gfid instead of the torch hub cache
    lpips_weights   torchvision backbone checkpoint for lpips instead of the torch hub cache; lpips_net its net
    k               neighbourhood size of precision/recall
    networks        ready-made networks by name, used instead of building them: features names ("inception",
                    "vgg16-stlpips", ...) and "lpips" / "stlpips" (tests pass stand-ins this way)
    sync_on_compute False when every process evaluates the same images (no summing across processes)

    Missing pretrained weights fail first (:class:`~vqstack.evaluation.weights.MissingWeightsError`), before any
    network is built."""
    requests = parse_metrics(metrics, features)
    given = dict(networks or {})
    paths = required_weights(requests, given, fid_weights, lpips_weights, lpips_net)
    options = {"sync_on_compute": sync_on_compute}
    built = {}  # features name -> SharedFeatures: one network instance (and forward) per image batch for all
    pairs, sets, tokens, descriptions, set_features = {}, {}, {}, {}, {}
    for request in requests:
        if request.metric in ("psnr", "ssim"):
            pairs[request.key] = pixel_metric(request.metric, options)
        elif request.metric == "colour-hist":
            pairs[request.key] = _metrics().ColourHistogramDistance(**options)
        elif request.metric in ("lpips", "stlpips"):
            network, descriptions[request.key] = perceptual_network(request.metric, given, paths, lpips_net)
            pairs[request.key] = _metrics().PerceptualDistance(network, **options)
        elif request.metric == "usage":
            if codebook_size is None:
                raise ValueError("The usage metric needs the tokenizer's codebook_size.")
            tokens["usage"] = _metrics().CodebookUsage(codebook_size, num_codebooks, **options)
        elif request.metric == "nll":
            raise ValueError("nll scores token sequences, not images: use token_nll(), not a metric suite.")
        elif request.metric == "attr":
            raise ValueError(f"{request.key} scores the held-out tagged images of a data set, not a suite's batches: "
                             f"use evaluate_tokenizer(..., data=SOURCE) or attribute_fidelity().")
        elif request.metric in ("precision", "recall"):
            network = shared_features(request.network, built, given, paths)
            if "precision" not in sets:  # one metric computes both
                sets["precision"] = _metrics().PrecisionRecall(network, k=k, **options)
                set_features["precision"] = request.network
            descriptions["precision"] = descriptions["recall"] = f"{network.description}; k={k} neighbours"
        else:  # a Fréchet distance: rfid, gfid, fd-*
            network = shared_features(request.network, built, given, paths)
            sets[request.key] = _metrics().FrechetDistance(network, **options)
            set_features[request.key] = request.network
            descriptions[request.key] = network.description
    return MetricSuite(pairs, sets, tokens, descriptions, set_features, built)


def _metrics():
    from . import metrics  # torchmetrics takes seconds to import: only when a suite is built

    return metrics


def required_weights(requests, given: dict, fid_weights, lpips_weights, lpips_net: str) -> dict:
    """The checkpoint paths the requested metrics need, found before anything is built (a MissingWeightsError
    otherwise); networks given ready-made need none."""
    paths = {}
    for request in requests:
        if request.network == FID_FEATURES and FID_FEATURES not in given:
            paths[FID_FEATURES] = inception_weights(fid_weights, what=request.key)
        if request.metric == "lpips" and "lpips" not in given:
            paths["lpips"] = lpips_backbone_weights(lpips_net, lpips_weights)
    return paths


def pixel_metric(name: str, options: dict):
    """PSNR or SSIM as the field computes them: on [0, 1] images with data range 1, each averaged over images."""
    metrics = _metrics()
    return metrics.PixelPSNR(**options) if name == "psnr" else metrics.PixelSSIM(**options)


def shared_features(name: str, built: dict, given: dict, paths: dict) -> SharedFeatures:
    if name not in built:
        if name in given:
            network = given[name]
        elif name == FID_FEATURES:
            network = registry("features").build(name, weights=str(paths[FID_FEATURES]))
        else:
            network = registry("features").build(name)
        built[name] = SharedFeatures(network)
    return built[name]


def perceptual_network(name: str, given: dict, paths: dict, lpips_net: str) -> tuple[nn.Module, str]:
    """The perceptual component for ``lpips`` / ``stlpips``, its own frozen instance, and what it is."""
    if name in given:
        return given[name], describe_perceptual(given[name])
    if name == "stlpips":
        return registry("perceptual").build("stlpips", net="vgg"), STLPIPS_DESCRIPTION
    network = registry("perceptual").build("lpips", net=lpips_net, backbone_weights=str(paths["lpips"]))
    return network, f"LPIPS v0.1, {lpips_net} backbone (torchvision ImageNet weights {paths['lpips']})"


def describe_perceptual(network: nn.Module) -> str:
    if hasattr(network, "description"):
        return network.description
    if getattr(network, "pretrained", True) is False:
        return f"{type(network).__name__} with a RANDOM backbone: a test stand-in, not a real metric"
    return f"{type(network).__name__} (given)"
