"""ARPrior: a Llama-style causal transformer (transformers' LlamaModel) over a tokenizer's image tokens, as LlamaGen.

    prior = vqstack.build("prior", "ar", vocab_size=1024, seq_len=256, num_classes=10)
    loss = prior(tokens, labels=[3, 1, ...]).loss               # training: next-token cross-entropy
    tokens = prior.generate(8, labels=3, cfg_scale=3.0, top_k=600, generator=torch.Generator().manual_seed(0))

The input is [condition prefix; image tokens[:-1]] and position P-1+i predicts image token i. The condition prefix
(see conditions.py) is one start token (unconditional), one class token, or one token per attribute group. The head
predicts image tokens only, so condition tokens can never be sampled.

With an image condition (image-to-image translation, as taming-transformers' cond stage) the input is [label prefix;
h*w condition embeddings; image tokens[:-1]], fed as ``inputs_embeds``, and position P+h*w-1+i predicts image token
i: every image token sees the whole condition image, also the part after it in raster order.

    prior = vqstack.build("prior", "ar", vocab_size=1024, seq_len=256, attributes={...},
                          image_condition=lineart.to_config(), patch_size=16)
    loss = prior(tokens, labels=tags, image=lineart(images)).loss
    tokens = prior.generate(4, labels="blue hair", image=sketch, cfg_scale=3.0, cfg_target="image")
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import LlamaConfig, LlamaModel

from ..core.modes import evaluating
from .base import Prior, PriorOutput, check_positive_int
from .sampling import check_sampling_options, sample_tokens
from .steppers import CACHE_KINDS, KVCacheStepper, RecomputeStepper, cache_keyword, training_cache


def llamagen_mlp_dim(dim: int) -> int:
    """SwiGLU hidden size as LlamaGen/Llama: 2/3 of 4*dim (same parameters as a 4x GELU MLP), rounded up to 256."""
    return -(-int(8 * dim / 3) // 256) * 256


class ARPrior(Prior):
    causal = True  # raster-order next-token model: Pipeline.inpaint may rank fills by the tokens after the hole

    def __init__(
        self,
        vocab_size: int,                      # image tokens: the tokenizer's codebook_size
        seq_len: int,                         # tokens per image, h * w in raster order
        num_classes: int = 0,                 # 0 = unconditional (or attribute-conditional); > 0 = class-conditional
        dim: int = 512,                       # transformer width
        depth: int = 8,                       # transformer blocks
        heads: int = 8,                       # attention heads (dim must divide by it)
        class_names: list[str] | None = None,        # optional names of the classes, so labels may be names
        attributes: dict[str, list[str]] | None = None,  # {"hair": ["blue", ...], ...}: one prefix token per group
        cond_dropout: float = 0.1,            # training: probability a sample's condition is replaced by null (CFG)
        group_dropout: float = 0.1,           # training: probability each attribute group alone becomes its null,
                                              # so partial conditions ("blue hair", eyes unknown) are learned too
        mlp_dim: int | None = None,           # SwiGLU hidden size (default: LlamaGen's 8/3 * dim rounded up to 256)
        dropout: float = 0.0,                 # attention dropout while training
        rope_theta: float = 10000.0,          # RoPE base
        init_std: float = 0.02,               # std of the normal weight init (the head starts at zero, as LlamaGen)
        image_condition: dict | None = None,  # a condition's to_config(): condition images read before the tokens
        image_dropout: float = 0.1,           # training: probability a sample's condition image becomes null (CFG)
        patch_size: int | None = None,        # condition pixels per token cell and side (the tokenizer's f)
        grid: list[int] | None = None,        # [h, w] token grid of the condition (default square: h = w)
        reference: bool = False,              # also read a reference picture's colours beside the condition
    ):
        super().__init__()
        for name, value in (("dim", dim), ("depth", depth), ("heads", heads)):
            check_positive_int(name, value)
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads}).")
        self.init_conditions(vocab_size, seq_len, num_classes, class_names, attributes, cond_dropout, group_dropout)
        # the image condition, read as a prefix of h*w positions (none: no parameters, no random draws, as before)
        self.init_image_condition(image_condition, dim, image_dropout, patch_size, grid, init_std, reference)
        self.image_condition_len = seq_len if self.image_condition is not None else 0

        self.config = LlamaConfig(
            vocab_size=vocab_size + self.conditions.num_tokens,  # input vocabulary: image tokens + condition tokens
            hidden_size=dim, intermediate_size=mlp_dim or llamagen_mlp_dim(dim), num_hidden_layers=depth,
            num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=self.context_len + seq_len,
            rope_theta=rope_theta, rms_norm_eps=1e-5, attention_dropout=dropout, initializer_range=init_std,
            tie_word_embeddings=False, pad_token_id=None, bos_token_id=None, eos_token_id=None,
            attn_implementation="sdpa",  # training and the reference steppers; sampling has its own step (decode.py)
        )
        self.backbone = LlamaModel(self.config)
        self.head = nn.Linear(dim, vocab_size, bias=False)
        nn.init.zeros_(self.head.weight)  # uniform first predictions, loss starts at log(vocab_size)

    @classmethod
    def example_kwargs(cls) -> dict:
        """Tiny sizes for tests and conformance checks."""
        return {"vocab_size": 32, "seq_len": 16, "num_classes": 3, "dim": 32, "depth": 2, "heads": 2}

    def forward(self, tokens: torch.Tensor, labels=None, image: torch.Tensor | None = None) -> PriorOutput:
        """Next-token cross-entropy of image ``tokens`` (B, seq_len) given ``labels`` (None = null condition) and,
        for a prior with an image condition, condition images ``image`` (1 or B, C, H, W) (None = null image)."""
        tokens = self.check_tokens(tokens)
        self.check_range(tokens)
        prefix = self.condition_tokens(labels, tokens.shape[0])
        if self.training and self.conditions.is_conditional:
            prefix = self.drop_conditions(prefix)
        if self.image_condition is None:
            if image is not None:
                self.check_condition_image(image, tokens.shape[0])  # refuses it in one line
            inputs = {"input_ids": torch.cat([prefix, tokens[:, :-1]], 1)}
        else:
            condition = self.image_condition_embeddings(image, tokens.shape[0])
            if self.training:
                condition = self.drop_image_condition(condition)
            embed = self.backbone.embed_tokens
            inputs = {"inputs_embeds": torch.cat([embed(prefix), condition.to(embed.weight.dtype),
                                                  embed(tokens[:, :-1])], 1)}
        # an empty pass-through cache: no host-side packed-sequence probe (a sync per step), same causal attention
        hidden = self.backbone(**inputs, use_cache=False,
                               **{cache_keyword(self.backbone): training_cache()}).last_hidden_state
        logits = self.head(hidden[:, self.context_len - 1:])
        loss = F.cross_entropy(logits.float().flatten(0, 1), tokens.flatten())
        return PriorOutput(loss=loss, logits=logits)

    @torch.inference_mode()
    def generate(self, n: int, labels=None, cfg_scale: float = 1.0, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None, generator: torch.Generator | None = None,
                 known: torch.Tensor | None = None, use_cache: bool = True, cache: str = "preallocated",
                 image: torch.Tensor | None = None, cfg_target: str = "both") -> torch.Tensor:
        """Sample ``n`` token sequences -> long (n, seq_len) in [0, vocab_size).

        labels       one label for all n, or one per sample (ids, class names, "blue hair,red eyes" tags; None = null)
        cfg_scale    classifier-free guidance scale; 1 = none. s != 1 runs [conditional; null] halves in one batch
        temperature  softmax temperature; 0 = greedy
        top_k/top_p  sample among the k likeliest tokens / the smallest set holding probability p
        generator    a torch.Generator: the same seed gives the same tokens
        known        (n, seq_len) or (n, h, w) tokens to keep, -1 where to sample (inpainting, raster order)
        use_cache    False re-runs the whole prefix every step (slow; a reference for tests and benchmarks)
        cache        KV cache kind: "preallocated" (our decode step, fastest), "dynamic" or "static" (LlamaModel.forward
                     with transformers' cache classes; references for tests and benchmarks)
        image        condition images (1 or n, C, H, W), as the prior's condition made them (None = the null image:
                     unconditional in the image); only for a prior built with image_condition
        cfg_target   what the unconditional half of guidance drops: "both" (labels and image), "image" (keeps the
                     labels) or "labels" (keeps the image)
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}.")
        check_sampling_options(temperature, top_k, top_p, cfg_scale)
        if cache not in CACHE_KINDS:
            raise ValueError(f"Unknown cache kind {cache!r}; choose from {CACHE_KINDS}.")
        guided = self.check_guidance(cfg_scale, cfg_target)
        if image is not None and self.image_condition is None:
            self.check_condition_image(image, n)  # refuses it in one line
        prefix = self.condition_tokens(labels, n)
        if known is not None:
            known = self.check_known(known, n)
        with evaluating(self):
            condition = None if self.image_condition is None else self.image_condition_embeddings(image, n)
            if guided:  # one batch: [conditional; unconditional]
                prefix, condition = self.guidance_rows(prefix, condition, cfg_target)
            if condition is not None:
                condition = condition.to(self.backbone.embed_tokens.weight.dtype)
            stepper = (KVCacheStepper if use_cache else RecomputeStepper)(
                self.backbone, self.head, self.context_len + self.seq_len, cache=cache)
            return sample_tokens(stepper, prefix, self.seq_len, self.vocab_size, cfg_scale if guided else None,
                                 temperature, top_k, top_p, generator, known, condition=condition)

    def extra_repr(self) -> str:
        image = f", image_condition={self.image_condition['name']}" if self.image_condition is not None else ""
        return (f"vocab_size={self.vocab_size}, seq_len={self.seq_len}, conditions={self.conditions.mode}, "
                f"prefix_len={self.prefix_len}{image}")
