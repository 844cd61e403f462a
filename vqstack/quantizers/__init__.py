"""Built-in quantizers, registered through the same pluggy hook a third-party plugin uses.

    vq        VectorQuantizer      learnable codebook, straight-through (VQ-VAE / VQGAN / LlamaGen options)
    ema       EMAVectorQuantizer   codebook of exponential moving averages (VQ-VAE-2)
    fsq       FSQ                  finite scalar quantization, no codebook (Mentzer et al. 2023)
    lfq       LFQ                  lookup-free sign quantization with entropy penalty (MAGVIT-2)
    residual  ResidualVQ           levels of any registered single-codebook quantizer (SoundStream / RQ-VAE)
"""
from typing import TYPE_CHECKING

from vqstack.core.hookspecs import hookimpl
from vqstack.lazy import lazy_exports, load_reference

# Registered by reference, so loading the plugins (``vqstack plugins``) imports no torch; see vqstack.lazy.
REFERENCES = {
    "vq": "vqstack.quantizers.vq:VectorQuantizer",
    "ema": "vqstack.quantizers.ema:EMAVectorQuantizer",
    "fsq": "vqstack.quantizers.fsq:FSQ",
    "lfq": "vqstack.quantizers.lfq:LFQ",
    "residual": "vqstack.quantizers.residual:ResidualVQ",
}

__all__ = [
    "Quantizer", "QuantizerOutput", "CodebookQuantizer", "VectorQuantizer", "EMAVectorQuantizer", "FSQ", "LFQ",
    "ResidualVQ", "BUILTIN_QUANTIZERS", "nearest_codes", "kmeans", "to_vectors", "to_maps", "usage_metrics",
    "code_counts", "is_metric_value",
]

__getattr__, __dir__ = lazy_exports(__name__, {
    "Quantizer": "base", "QuantizerOutput": "base", "code_counts": "base", "is_metric_value": "base",
    "to_maps": "base", "to_vectors": "base", "usage_metrics": "base",
    "CodebookQuantizer": "codebook", "kmeans": "codebook", "nearest_codes": "codebook",
    "EMAVectorQuantizer": "ema", "FSQ": "fsq", "LFQ": "lfq", "ResidualVQ": "residual", "VectorQuantizer": "vq",
    # name -> class, as before; importing them all is what REFERENCES avoids, so only on first use
    "BUILTIN_QUANTIZERS": lambda: {name: load_reference(ref) for name, ref in REFERENCES.items()},
})


@hookimpl
def vqstack_register_quantizers(registry):
    for name, reference in REFERENCES.items():
        registry.register(name, reference)


if TYPE_CHECKING:  # what static tools and IDEs see; never runs
    from .base import Quantizer, QuantizerOutput, code_counts, is_metric_value, to_maps, to_vectors, usage_metrics
    from .codebook import CodebookQuantizer, kmeans, nearest_codes
    from .ema import EMAVectorQuantizer
    from .fsq import FSQ
    from .lfq import LFQ
    from .residual import ResidualVQ
    from .vq import VectorQuantizer

    BUILTIN_QUANTIZERS: dict[str, type[Quantizer]]
