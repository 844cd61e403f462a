"""Built-in quantizers, registered through the same pluggy hook a third-party plugin uses.

    vq        VectorQuantizer      learnable codebook, straight-through (VQ-VAE / VQGAN / LlamaGen options)
    ema       EMAVectorQuantizer   codebook of exponential moving averages (VQ-VAE-2)
    fsq       FSQ                  finite scalar quantization, no codebook (Mentzer et al. 2023)
    lfq       LFQ                  lookup-free sign quantization with entropy penalty (MAGVIT-2)
    residual  ResidualVQ           levels of any registered single-codebook quantizer (SoundStream / RQ-VAE)
"""
from vqstack.core.hookspecs import hookimpl

from .base import Quantizer, QuantizerOutput, code_counts, is_metric_value, to_maps, to_vectors, usage_metrics
from .codebook import CodebookQuantizer, kmeans, nearest_codes
from .ema import EMAVectorQuantizer
from .fsq import FSQ
from .lfq import LFQ
from .residual import ResidualVQ
from .vq import VectorQuantizer

BUILTIN_QUANTIZERS = {
    "vq": VectorQuantizer,
    "ema": EMAVectorQuantizer,
    "fsq": FSQ,
    "lfq": LFQ,
    "residual": ResidualVQ,
}

__all__ = [
    "Quantizer", "QuantizerOutput", "CodebookQuantizer", "VectorQuantizer", "EMAVectorQuantizer", "FSQ", "LFQ",
    "ResidualVQ", "BUILTIN_QUANTIZERS", "nearest_codes", "kmeans", "to_vectors", "to_maps", "usage_metrics",
    "code_counts", "is_metric_value",
]


@hookimpl
def vqstack_register_quantizers(registry):
    for name, factory in BUILTIN_QUANTIZERS.items():
        registry.register(name, factory)
