"""Built-in priors (stage 2), registered through the same pluggy hook a third-party plugin uses.

    ar    ARPrior    Llama-style causal transformer over image tokens (LlamaGen): unconditional, class- or
                     attribute-conditional, classifier-free guidance, KV-cached sampling
"""
from vqstack.core.hookspecs import hookimpl

from .ar import ARPrior
from .base import Prior, PriorOutput
from .conditions import ConditionVocab
from .sampling import cfg_combine, filter_top_k, filter_top_p, mask_invalid, process_logits, sample_tokens

BUILTIN_PRIORS = {"ar": ARPrior}

__all__ = ["ARPrior", "Prior", "PriorOutput", "ConditionVocab", "BUILTIN_PRIORS", "cfg_combine", "mask_invalid",
           "filter_top_k", "filter_top_p", "process_logits", "sample_tokens"]


@hookimpl
def vqstack_register_priors(registry):
    for name, factory in BUILTIN_PRIORS.items():
        registry.register(name, factory)
