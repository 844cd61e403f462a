"""Everything a plugin author imports, from one stable place.

    from vqstack.api import hookimpl, Quantizer, QuantizerOutput, usage_metrics

The modules behind these names (``vqstack.quantizers.base``, ``vqstack.priors.sampling``, ...) may move between
versions; the names here stay. A package in ``plugins/`` imports only this module and the ``vqstack`` top level
(``tests/test_public_api.py`` fails otherwise).

Only the plugin machinery is imported with this module; every other name is imported on first use, so a plugin
module that imports ``hookimpl`` from here and registers ``"package.module:Class"`` strings costs nothing when
``vqstack plugins`` loads it (docs/plugins.md, "Registering by reference").

What is here, by kind:

- plugins: ``hookimpl``, ``register_plugin``, ``unregister_plugin``, ``build``, ``components``, ``registry``,
  ``Registry`` (what a registration hook receives, for type hints; ``registry.register(name, factory)`` takes a
  class or function, or ``"package.module:Attribute"`` naming one, imported on first build),
  ``ComponentImportError`` (such a reference could not be imported), ``lazy_exports`` (a package's module-level
  ``__getattr__`` and ``__dir__`` that import its names on first use), ``DuplicateComponentError``,
  ``UnknownComponentError``, ``PluginWarning``, ``DISABLE_ENV``
- quantizers: ``Quantizer``, ``QuantizerOutput``, ``to_vectors``, ``to_maps``, ``usage_metrics``, ``code_counts``,
  ``is_metric_value``; codebook helpers ``CodebookQuantizer``, ``nearest_codes``, ``kmeans``, ``code_stats``;
  process-group helpers ``all_reduce_sum_``, ``differentiable_all_reduce_sum``, ``broadcast_``, ``fp32``
- encoders / decoders: ``Encoder``, ``Decoder`` (taming's conv nets) and their blocks ``ResnetBlock``,
  ``AttnBlock``, ``Downsample``, ``Upsample``, ``Normalize``
- discriminators: ``PatchDiscriminator``; perceptual losses: ``FrozenPerceptualLoss`` (the base of lpips/stlpips)
- feature networks: ``FeatureNetwork`` (the frozen, always-eval base of the ``features`` kind);
  ``MissingWeightsError`` (a ``FileNotFoundError``: raise it when pretrained weights are absent, and the checks
  report the component as skipped, not failed)
- priors: ``Prior`` (the base: sizes, conditions, CFG dropout, token checks), ``PriorOutput``, ``ConditionVocab``
  (class / attribute conditions, null tokens), the sampling helpers ``process_logits``, ``sample_from_logits``,
  ``cfg_combine``, ``mask_invalid``, ``filter_top_k``, ``filter_top_p``, ``check_sampling_options``, and
  ``evaluating`` (eval mode for a block); for an image condition ``ImageConditionEmbedding`` (the learned patch
  embedding ``Prior.init_image_condition`` builds) and ``CFG_TARGETS`` (what guidance may drop: both, image,
  labels). What a prior must get right (``vqstack.priors.base`` says more):
  the ``conditions.num_tokens`` condition ids follow the ``vocab_size`` image ids (1 unconditional,
  ``num_classes + 1``, or per attribute group its values + 1), so an input embedding has ``vocab_size +
  conditions.num_tokens`` rows; ``PriorOutput.logits[:, i]`` scores ``tokens[:, i]`` itself (a causal prior from
  ``tokens[:, :i]`` only), which token NLL and inpaint ranking rely on; ``forward`` calls ``drop_conditions``
  itself in training; ``condition_tokens(None, n)`` is the unconditional half for guidance. The prior recipe builds
  a prior with the contract's arguments and only those of its preset's sizes (``dim``, ``depth``, ``heads``) the
  constructor takes; ``check_prior`` builds it the same way
- restorers: ``Restorer`` (the base: the tokenizer's sizes, ``grid``, ``check_images``), ``RestorerOutput``,
  ``blend_codes`` (the fidelity blend of predicted and own codes), ``tokenizer_sizes``
- conditions: ``Condition`` (the base: ``channels``, ``convert(images, generator)``, seeded ``sample``,
  ``to_config``), ``build_condition`` (from a name or ``to_config()``), ``check_same_condition`` (refuse a
  condition other than a model's own)
- both stages: ``Tokenizer``, ``TokenizerOutput``, ``Pipeline``, ``RestorePipeline``, ``save_component``,
  ``load_component``
- conformance checks: ``check_component``, ``check_quantizer``, ``check_encoder``, ``check_decoder``,
  ``check_discriminator``, ``check_perceptual``, ``check_prior``, ``check_features``, ``check_restorer``,
  ``check_condition``, ``build_example``,
  ``example_kwargs``
"""
from __future__ import annotations

from typing import TYPE_CHECKING

# The plugin machinery is light (no torch) and already loaded whenever a plugin is: imported now.
from .core import (DISABLE_ENV, DuplicateComponentError, PluginWarning, UnknownComponentError, build, components,
                   hookimpl, register_plugin, registry, unregister_plugin)
from .lazy import lazy_exports
from .core.registry import ComponentImportError, Registry

# Everything else needs torch (the priors transformers too), so it is imported on first use: a plugin module doing
# ``from vqstack.api import hookimpl`` then costs nothing when ``vqstack plugins`` loads it. public name -> module.
_EXPORTS = {
    "AttnBlock": "autoencoders.blocks", "Downsample": "autoencoders.blocks", "Normalize": "autoencoders.blocks",
    "ResnetBlock": "autoencoders.blocks", "Upsample": "autoencoders.blocks",
    "Decoder": "autoencoders.conv", "Encoder": "autoencoders.conv",
    "load_component": "core.serialization", "save_component": "core.serialization",
    "Condition": "conditions.base", "build_condition": "conditions.base", "check_same_condition": "conditions.base",
    "PatchDiscriminator": "discriminators.patchgan",
    "FeatureNetwork": "evaluation.features",
    "MissingWeightsError": "evaluation.weights",
    "FrozenPerceptualLoss": "perceptual.lpips",
    "Pipeline": "pipelines.generation",
    "RestorePipeline": "pipelines.restoration",
    "evaluating": "core.modes",
    "Prior": "priors.base", "PriorOutput": "priors.base",
    "ConditionVocab": "priors.conditions",
    "CFG_TARGETS": "priors.image_condition", "ImageConditionEmbedding": "priors.image_condition",
    "cfg_combine": "priors.sampling", "check_sampling_options": "priors.sampling", "filter_top_k": "priors.sampling",
    "filter_top_p": "priors.sampling", "mask_invalid": "priors.sampling", "process_logits": "priors.sampling",
    "sample_from_logits": "priors.sampling",
    "Restorer": "restorers.base", "RestorerOutput": "restorers.base", "blend_codes": "restorers.base",
    "tokenizer_sizes": "restorers.base",
    "Quantizer": "quantizers.base", "QuantizerOutput": "quantizers.base", "code_counts": "quantizers.base",
    "is_metric_value": "quantizers.base", "to_maps": "quantizers.base", "to_vectors": "quantizers.base",
    "usage_metrics": "quantizers.base",
    "CodebookQuantizer": "quantizers.codebook", "all_reduce_sum_": "quantizers.codebook",
    "broadcast_": "quantizers.codebook", "code_stats": "quantizers.codebook",
    "differentiable_all_reduce_sum": "quantizers.codebook", "fp32": "quantizers.codebook",
    "kmeans": "quantizers.codebook", "nearest_codes": "quantizers.codebook",
    "build_example": "conformance", "check_component": "conformance", "check_condition": "conformance",
    "check_decoder": "conformance", "check_discriminator": "conformance", "check_encoder": "conformance",
    "check_features": "conformance", "check_perceptual": "conformance", "check_prior": "conformance",
    "check_quantizer": "conformance", "check_restorer": "conformance", "example_kwargs": "conformance",
    "Tokenizer": "tokenizer", "TokenizerOutput": "tokenizer",
}

__all__ = [
    # plugins
    "hookimpl", "register_plugin", "unregister_plugin", "build", "components", "registry", "Registry",
    "ComponentImportError", "lazy_exports", "DuplicateComponentError", "UnknownComponentError", "PluginWarning",
    "DISABLE_ENV",
    # quantizers
    "Quantizer", "QuantizerOutput", "to_vectors", "to_maps", "usage_metrics", "code_counts", "is_metric_value",
    "CodebookQuantizer", "nearest_codes", "kmeans", "code_stats", "all_reduce_sum_", "differentiable_all_reduce_sum",
    "broadcast_", "fp32",
    # encoders, decoders, discriminators, perceptual losses, feature networks
    "Encoder", "Decoder", "ResnetBlock", "AttnBlock", "Downsample", "Upsample", "Normalize", "PatchDiscriminator",
    "FrozenPerceptualLoss", "FeatureNetwork", "MissingWeightsError",
    # priors
    "Prior", "PriorOutput", "ConditionVocab", "process_logits", "sample_from_logits", "cfg_combine", "mask_invalid",
    "filter_top_k", "filter_top_p", "check_sampling_options", "evaluating", "ImageConditionEmbedding", "CFG_TARGETS",
    # restorers
    "Restorer", "RestorerOutput", "blend_codes", "tokenizer_sizes",
    # conditions
    "Condition", "build_condition", "check_same_condition",
    # both stages
    "Tokenizer", "TokenizerOutput", "Pipeline", "RestorePipeline", "save_component", "load_component",
    # conformance checks
    "check_component", "check_quantizer", "check_encoder", "check_decoder", "check_discriminator", "check_perceptual",
    "check_prior", "check_features", "check_restorer", "check_condition", "build_example", "example_kwargs",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:  # what static tools and IDEs see; never runs
    from .autoencoders.blocks import AttnBlock, Downsample, Normalize, ResnetBlock, Upsample
    from .autoencoders.conv import Decoder, Encoder
    from .core.serialization import load_component, save_component
    from .conditions.base import Condition, build_condition, check_same_condition
    from .discriminators.patchgan import PatchDiscriminator
    from .evaluation.features import FeatureNetwork
    from .evaluation.weights import MissingWeightsError
    from .perceptual.lpips import FrozenPerceptualLoss
    from .pipelines.generation import Pipeline
    from .pipelines.restoration import RestorePipeline
    from .core.modes import evaluating
    from .priors.base import Prior, PriorOutput
    from .priors.conditions import ConditionVocab
    from .priors.image_condition import CFG_TARGETS, ImageConditionEmbedding
    from .priors.sampling import (cfg_combine, check_sampling_options, filter_top_k, filter_top_p, mask_invalid,
                                  process_logits, sample_from_logits)
    from .restorers.base import Restorer, RestorerOutput, blend_codes, tokenizer_sizes
    from .quantizers.base import (Quantizer, QuantizerOutput, code_counts, is_metric_value, to_maps, to_vectors,
                                  usage_metrics)
    from .quantizers.codebook import (CodebookQuantizer, all_reduce_sum_, broadcast_, code_stats,
                                      differentiable_all_reduce_sum, fp32, kmeans, nearest_codes)
    from .conformance import (build_example, check_component, check_condition, check_decoder, check_discriminator,
                              check_encoder, check_features, check_perceptual, check_prior, check_quantizer,
                              check_restorer, example_kwargs)
    from .tokenizer import Tokenizer, TokenizerOutput
