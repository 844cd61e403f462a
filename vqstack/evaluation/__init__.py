"""Measuring tokenizers and priors the way the field does: PSNR, SSIM, LPIPS, FID (rFID/gFID), k-NN precision/recall,
codebook usage, token NLL, the offline ST-LPIPS and FD-VGG, a colour-histogram distance and attribute fidelity (a
classifier of the data's own tags on originals and reconstructions), each reported under its own name.

    from vqstack.evaluation import evaluate_tokenizer
    values = evaluate_tokenizer(tokenizer, batches, ["psnr", "ssim", "stlpips", "fd-vgg", "usage"])

Modules: ``catalog`` (metric names), ``weights`` (finding pretrained weights, never downloading), ``features`` (the
``features`` registry kind and its built-ins), ``metrics`` (torchmetrics Metric objects), ``suite`` (named metrics
fed by role), ``tokenizer_info`` (a tokenizer's resolution and codebook layout), ``reconstruction`` and
``generation`` (the evaluation loops), ``reference`` (the real images' features for Fréchet distances and
precision/recall, cached in $VQSTACK_CACHE), ``attributes`` (attr:<column>: the tag classifier, its cache in
$VQSTACK_CACHE and report), ``report`` (JSON and table), ``command`` (``vqstack eval``). See docs/evaluation.md.

Names are imported on first use: ``vqstack.evaluation.features`` is a built-in plugin loaded with every registry,
and torchmetrics takes seconds to import.
"""
import importlib

_EXPORTS = {
    "MissingWeightsError": "weights", "inception_weights": "weights", "lpips_backbone_weights": "weights",
    "FeatureNetwork": "features", "VGG16STLPIPSFeatures": "features", "InceptionFeatures": "features",
    "FrechetDistance": "metrics", "PerceptualDistance": "metrics", "CodebookUsage": "metrics",
    "PrecisionRecall": "metrics", "ColourHistogramDistance": "metrics", "AttributeConfusion": "metrics",
    "attribute_fidelity": "attributes", "AttributeReport": "attributes", "AttributeClassifier": "attributes",
    "METRICS": "catalog", "parse_metrics": "catalog",
    "MetricSuite": "suite", "build_suite": "suite",
    "evaluate_tokenizer": "reconstruction", "tokenizer_suite": "reconstruction",
    "evaluate_samples": "generation", "sample_images": "generation", "token_nll": "generation",
    "reference_features": "reference", "ReferenceFeatures": "reference",
    "make_record": "report", "format_table": "report", "write_json": "report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)


def __dir__():
    return sorted([*globals(), *_EXPORTS])
