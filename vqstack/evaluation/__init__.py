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

This package is the built-in plugin ``vqstack.evaluation``: its hook registers the ``features`` built-ins by
reference, so loading the plugins imports neither torch nor torchmetrics (which takes seconds); every name below is
imported on first use.
"""
from vqstack.core.hookspecs import hookimpl
from vqstack.lazy import lazy_exports

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

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


@hookimpl
def vqstack_register_features(registry):
    registry.register("vgg16-stlpips", "vqstack.evaluation.features:VGG16STLPIPSFeatures")
    registry.register("inception", "vqstack.evaluation.features:InceptionFeatures")
