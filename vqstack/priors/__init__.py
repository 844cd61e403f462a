"""Built-in priors (stage 2), registered through the same pluggy hook a third-party plugin uses.

    ar    ARPrior    Llama-style causal transformer over image tokens (LlamaGen): unconditional, class- or
                     attribute-conditional, classifier-free guidance, KV-cached sampling; optionally an image
                     condition (line art, grayscale, ...) read before the tokens (image-to-image translation)

``build_prior(name, **recipe_arguments)`` builds any registered prior as the training recipes do (only the
arguments its constructor takes); ``generate_options(prior, known=..., steps=...)`` refuses in one line the optional
``generate`` arguments a prior does not take.
"""
from vqstack.core.hookspecs import hookimpl

from .ar import ARPrior
from .base import Prior, PriorOutput
from .build import build_prior, prior_arguments
from .conditions import ConditionVocab
from .image_condition import CFG_TARGETS, ImageConditionEmbedding
from .sampling import (cfg_combine, filter_top_k, filter_top_p, generate_options, mask_invalid, process_logits,
                       sample_tokens)

BUILTIN_PRIORS = {"ar": ARPrior}

__all__ = ["ARPrior", "Prior", "PriorOutput", "ConditionVocab", "ImageConditionEmbedding", "CFG_TARGETS",
           "BUILTIN_PRIORS", "build_prior", "prior_arguments", "generate_options", "cfg_combine", "mask_invalid",
           "filter_top_k", "filter_top_p", "process_logits", "sample_tokens"]


@hookimpl
def vqstack_register_priors(registry):
    for name, factory in BUILTIN_PRIORS.items():
        registry.register(name, factory)
