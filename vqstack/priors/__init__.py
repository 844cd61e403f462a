"""Built-in priors (stage 2), registered through the same pluggy hook a third-party plugin uses.

    ar    ARPrior    Llama-style causal transformer over image tokens (LlamaGen): unconditional, class- or
                     attribute-conditional, classifier-free guidance, KV-cached sampling; optionally an image
                     condition (line art, grayscale, ...) read before the tokens (image-to-image translation)

``build_prior(name, **recipe_arguments)`` builds any registered prior as the training recipes do (only the
arguments its constructor takes); ``generate_options(prior, known=..., steps=...)`` refuses in one line the optional
``generate`` arguments a prior does not take.
"""
from typing import TYPE_CHECKING

from vqstack.core.hookspecs import hookimpl
from vqstack.lazy import lazy_exports, load_reference

# Registered by reference: loading the plugins (``vqstack plugins``) imports neither torch nor transformers (which
# vqstack.priors.ar needs). See vqstack.lazy.
REFERENCES = {"ar": "vqstack.priors.ar:ARPrior"}

__all__ = ["ARPrior", "Prior", "PriorOutput", "ConditionVocab", "ImageConditionEmbedding", "CFG_TARGETS",
           "BUILTIN_PRIORS", "build_prior", "prior_arguments", "generate_options", "cfg_combine", "mask_invalid",
           "filter_top_k", "filter_top_p", "process_logits", "sample_tokens"]

__getattr__, __dir__ = lazy_exports(__name__, {
    "ARPrior": "ar", "Prior": "base", "PriorOutput": "base", "build_prior": "build", "prior_arguments": "build",
    "ConditionVocab": "conditions", "CFG_TARGETS": "image_condition", "ImageConditionEmbedding": "image_condition",
    "cfg_combine": "sampling", "filter_top_k": "sampling", "filter_top_p": "sampling",
    "generate_options": "sampling", "mask_invalid": "sampling", "process_logits": "sampling",
    "sample_tokens": "sampling",
    "BUILTIN_PRIORS": lambda: {name: load_reference(ref) for name, ref in REFERENCES.items()},  # name -> class
})


@hookimpl
def vqstack_register_priors(registry):
    for name, reference in REFERENCES.items():
        registry.register(name, reference)


if TYPE_CHECKING:  # what static tools and IDEs see; never runs
    from .ar import ARPrior
    from .base import Prior, PriorOutput
    from .build import build_prior, prior_arguments
    from .conditions import ConditionVocab
    from .image_condition import CFG_TARGETS, ImageConditionEmbedding
    from .sampling import (cfg_combine, filter_top_k, filter_top_p, generate_options, mask_invalid, process_logits,
                           sample_tokens)

    BUILTIN_PRIORS: dict[str, type[Prior]]
