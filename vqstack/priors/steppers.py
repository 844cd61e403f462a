"""The model one step at a time, for the sampling loop (sampling.py): a stepper takes token ids (B, T) or input
embeddings (B, T, dim) appended after everything fed so far, and returns the last position's logits (B, V).

    KVCacheStepper     keys and values kept: our decode step (decode.py) with buffers allocated once (default,
                       "preallocated"), or LlamaModel.forward with transformers' DynamicCache / StaticCache
    RecomputeStepper   no cache: re-runs the whole sequence every step (a reference for tests and benchmarks)

A prior that reads an image condition as a prefix of embeddings prefills [label prefix; condition; known leading
tokens] as embeddings once, then steps one token id at a time.
"""
from __future__ import annotations

import inspect

import torch
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer, StaticCache

from .decode import LlamaDecoder

CACHE_KINDS = ("preallocated", "dynamic", "static")


# transformers 5 renamed `past_key_values` to `cache`; pass whichever this version's decoder takes.
def cache_keyword(backbone) -> str:
    return "cache" if "cache" in inspect.signature(backbone.forward).parameters else "past_key_values"


class PassThroughLayer(DynamicLayer):
    """A cache layer that keeps nothing: each update returns the new keys and values as they are.

    A training forward hands the decoder a cache of these (``training_cache``). Without any cache, transformers
    probes the position ids for packed sequences and reads the answer on the host, a device sync every step; with
    an empty cache it knows there is no past and no packing, and still lets SDPA use its causal kernel."""

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        return key_states, value_states


def training_cache() -> Cache:
    """An empty cache for one full-sequence forward (see :class:`PassThroughLayer`); one layer per decoder block."""
    return Cache(layer_class_to_replicate=PassThroughLayer)


def stepper_inputs(inputs: torch.Tensor) -> dict:
    """The decoder keyword for ``inputs``: ids (B, T) -> ``input_ids``, embeddings (B, T, dim) -> ``inputs_embeds``."""
    return {"inputs_embeds" if inputs.is_floating_point() else "input_ids": inputs}


class KVCacheStepper:
    """Feeds new tokens to a decoder that keeps its keys/values; returns the last position's logits.

    cache   "preallocated" (default): our decode step over the model's modules, buffers for ``max_len`` positions;
            "dynamic" / "static": ``LlamaModel.forward`` with transformers' DynamicCache (grows by concatenation,
            copying the cache every step) / StaticCache (attends over all ``max_len`` slots behind a mask)."""

    def __init__(self, backbone, head, max_len: int, cache: str = "preallocated"):
        if cache not in CACHE_KINDS:
            raise ValueError(f"Unknown cache kind {cache!r}; choose from {CACHE_KINDS}.")
        self.backbone, self.head, self.length = backbone, head, 0
        if cache == "preallocated":
            self.decoder = LlamaDecoder(backbone, max_len)
        else:
            self.decoder = None
            config = backbone.config
            self.cache = DynamicCache(config=config) if cache == "dynamic" else StaticCache(config=config,
                                                                                          max_cache_len=max_len)
            self.cache_kw = cache_keyword(backbone)
            self.positions = torch.arange(max_len, device=backbone.embed_tokens.weight.device)[None]

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids (B, T) -> the decoder's input embeddings (B, T, dim), to join a prefix of embeddings."""
        return self.backbone.get_input_embeddings()(ids)

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        """ids (B, T) or embeddings (B, T, dim) appended after everything fed so far -> next-token logits (B, V)."""
        if self.decoder is not None:
            return self.head(self.decoder(inputs)[:, -1])  # the head runs on the last position only
        end = self.length + inputs.shape[1]
        hidden = self.backbone(**stepper_inputs(inputs), position_ids=self.positions[:, self.length:end],
                               use_cache=True, **{self.cache_kw: self.cache}).last_hidden_state
        self.length = end
        return self.head(hidden[:, -1])


class RecomputeStepper:
    """The same interface without a cache: re-runs the full sequence every step (reference and baseline)."""

    def __init__(self, backbone, head, max_len: int = 0, cache: str | None = None):
        self.backbone, self.head, self.inputs = backbone, head, None  # ids, or embeddings once any came

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.backbone.get_input_embeddings()(ids)

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.inputs is None:
            self.inputs = inputs
        elif self.inputs.is_floating_point() or inputs.is_floating_point():  # embeddings from here on
            as_embeddings = [x if x.is_floating_point() else self.embed(x) for x in (self.inputs, inputs)]
            self.inputs = torch.cat(as_embeddings, 1)
        else:
            self.inputs = torch.cat([self.inputs, inputs], 1)
        hidden = self.backbone(**stepper_inputs(self.inputs), use_cache=False).last_hidden_state
        return self.head(hidden[:, -1])
