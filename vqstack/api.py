"""Everything a plugin author imports, from one stable place.

    from vqstack.api import hookimpl, Quantizer, QuantizerOutput, usage_metrics

The modules behind these names (``vqstack.quantizers.base``, ``vqstack.priors.sampling``, ...) may move between
versions; the names here stay. A package in ``plugins/`` imports only this module and the ``vqstack`` top level
(``tests/test_public_api.py`` fails otherwise).

What is here, by kind:

- plugins: ``hookimpl``, ``register_plugin``, ``unregister_plugin``, ``build``, ``components``, ``registry``,
  ``Registry`` (what a registration hook receives, for type hints), ``DuplicateComponentError``,
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

from .autoencoders.blocks import AttnBlock, Downsample, Normalize, ResnetBlock, Upsample
from .autoencoders.conv import Decoder, Encoder
from .core import (DISABLE_ENV, DuplicateComponentError, PluginWarning, UnknownComponentError, build, components,
                   hookimpl, register_plugin, registry, unregister_plugin)
from .core.serialization import load_component, save_component
from .core.registry import Registry
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

__all__ = [
    # plugins
    "hookimpl", "register_plugin", "unregister_plugin", "build", "components", "registry", "Registry",
    "DuplicateComponentError", "UnknownComponentError", "PluginWarning", "DISABLE_ENV",
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
