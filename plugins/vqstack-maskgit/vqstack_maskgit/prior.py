"""MaskGITPrior: a bidirectional transformer (transformers' BertModel) over a tokenizer's image tokens, as MaskGIT.

    prior = vqstack.build("prior", "maskgit", vocab_size=1024, seq_len=256, num_classes=10)
    loss = prior(tokens, labels=[3, 1, ...]).loss               # training: cross-entropy of the masked tokens
    tokens = prior.generate(8, labels=3, cfg_scale=3.0, steps=12, generator=torch.Generator().manual_seed(0))

The input is [condition prefix; image tokens, masked ones replaced by the [MASK] id]. The condition prefix is the
one the "ar" prior uses (vqstack.api.ConditionVocab): a start token, a class token, or one token per attribute
group; its ids follow the image tokens, and [MASK] comes after them. Every position sees every other one, so
generation decodes all tokens in ``steps`` parallel passes and an inpainted hole sees the image on all its sides.

With an image condition (``image_condition=``, image-to-image translation) each image position's input embedding
adds the embedding of its own condition cell (vqstack.api.Prior.init_image_condition: a learned patch embedding on
the token grid), masked or not, so the condition is always visible. Added rather than h*w extra prefix positions:
a bidirectional model already lets every position attend to every cell, position j finds its own cell without
searching for it, and the sequence stays seq_len long (a prefix would make attention about 4x dearer per pass).
"""
from __future__ import annotations

import numbers

import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertConfig, BertModel

from vqstack.api import (Prior, PriorOutput, check_sampling_options, evaluating, process_logits,
                         sample_from_logits)

from .schedule import check_schedule, gumbel_noise, lowest, masked_after_pass, training_mask

IGNORE = -100  # cross_entropy's ignore_index: the target of a visible position
EVAL_MASK_SEED = 0  # eval-mode forward masks from this seed: a comparable validation loss, global RNG untouched


class MaskGITPrior(Prior):
    # every position sees every other, so Pipeline.inpaint does not rank fills by "the tokens after the hole"
    causal = False

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
        mlp_dim: int | None = None,           # GELU MLP hidden size (default 4 * dim, as BERT and MaskGIT)
        dropout: float = 0.0,                 # attention and hidden dropout while training
        init_std: float = 0.02,               # std of the normal weight init (the head starts at zero)
        steps: int = 8,                       # default decoding passes of generate() (docs/generation.md: 8 is
                                              # the knee of quality against time; 8-16 typical)
        choice_temperature: float = 4.5,      # Gumbel noise on the confidence that picks tokens to keep; annealed
                                              # to 0 over the passes (0 = keep the most confident, deterministic)
        mask_schedule: str = "cosine",        # gamma(r), the masked fraction: "cosine", "linear", "square", "sqrt"
        image_condition: dict | None = None,  # a condition's to_config(): condition images added to the positions
        image_dropout: float = 0.1,           # training: probability a sample's condition image becomes null (CFG)
        patch_size: int | None = None,        # condition pixels per token cell and side (the tokenizer's f)
        grid: list[int] | None = None,        # [h, w] token grid of the condition (default square: h = w)
        reference: bool = False,              # also read a reference picture's colours beside the condition
    ):
        super().__init__()
        for name, value in (("dim", dim), ("depth", depth), ("heads", heads), ("steps", steps)):
            check_positive_int(name, value)
        if mlp_dim is not None:
            check_positive_int("mlp_dim", mlp_dim)
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads}).")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
        if not isinstance(choice_temperature, numbers.Real) or not choice_temperature >= 0:
            raise ValueError(f"choice_temperature must be a number >= 0 (0 = no noise), got {choice_temperature!r}.")
        check_schedule(mask_schedule)
        # sizes, the condition vocabulary (the same ids as "ar"), the null prefix and CFG dropout: vqstack.api.Prior
        self.init_conditions(vocab_size, seq_len, num_classes, class_names, attributes, cond_dropout, group_dropout)
        # the image condition, added to each image position (none: no parameters, no random draws, as before)
        self.init_image_condition(image_condition, dim, image_dropout, patch_size, grid, init_std, reference)
        self.steps, self.choice_temperature, self.mask_schedule = steps, float(choice_temperature), mask_schedule
        # input vocabulary: image tokens, condition tokens (the same ids as "ar"), then [MASK]
        self.mask_id = vocab_size + self.conditions.num_tokens

        self.config = BertConfig(
            vocab_size=self.mask_id + 1, hidden_size=dim, num_hidden_layers=depth, num_attention_heads=heads,
            intermediate_size=mlp_dim or 4 * dim, hidden_act="gelu", hidden_dropout_prob=dropout,
            attention_probs_dropout_prob=dropout, max_position_embeddings=self.prefix_len + seq_len,
            type_vocab_size=1, initializer_range=init_std,
            pad_token_id=None,  # BERT's default 0 would freeze image token 0's embedding at zero
            attn_implementation="sdpa",
        )
        self.backbone = BertModel(self.config, add_pooling_layer=False)  # no pooler: nothing would train it
        self.head = nn.Linear(dim, vocab_size)  # image tokens only: condition and [MASK] ids are never predicted
        nn.init.zeros_(self.head.weight)  # uniform first predictions, loss starts at log(vocab_size)
        nn.init.zeros_(self.head.bias)

    @classmethod
    def example_kwargs(cls) -> dict:
        """Tiny sizes for tests and conformance checks."""
        return {"vocab_size": 32, "seq_len": 16, "num_classes": 3, "dim": 32, "depth": 2, "heads": 2, "steps": 6}

    def logits(self, prefix: torch.Tensor, image_ids: torch.Tensor, positions: torch.Tensor | None = None,
               condition: torch.Tensor | None = None):
        """Backbone over [prefix; image_ids] -> head logits of every image position (B, seq_len, V), or only of the
        True ``positions`` (B, seq_len) bool, flattened to (M, V) (saves the head where few positions matter).
        ``condition`` (B, seq_len, dim), an image condition's embeddings, is added to the image positions' inputs."""
        ids = torch.cat([prefix, image_ids], 1)
        if condition is None:
            inputs = {"input_ids": ids}
        else:
            embeddings = self.backbone.embeddings.word_embeddings(ids)
            added = torch.cat([embeddings[:, :self.prefix_len], embeddings[:, self.prefix_len:] + condition], 1)
            inputs = {"inputs_embeds": added}
        hidden = self.backbone(**inputs).last_hidden_state[:, self.prefix_len:]
        return self.head(hidden if positions is None else hidden[positions])

    def forward(self, tokens: torch.Tensor, labels=None, mask: torch.Tensor | None = None,
                image: torch.Tensor | None = None) -> PriorOutput:
        """Masked-token cross-entropy of image ``tokens`` (B, seq_len) given ``labels`` (None = null condition) and,
        for a prior with an image condition, condition images ``image`` (1 or B, C, H, W) (None = null image).

        ``mask`` (B, seq_len) bool, True = hidden, picks the masked positions; by default each sample masks
        ceil(gamma(r) * seq_len) random positions, r ~ U(0, 1): from the global RNG while training, from a fixed seed
        in eval mode (a validation loss comparable between evaluations, and no draw from the training stream)."""
        tokens = self.check_tokens(tokens)
        self.check_range(tokens)
        if mask is None:
            mask = self.draw_mask(tokens.shape[0])
        else:
            mask = self.check_mask(mask, tokens)
        prefix = self.condition_tokens(labels, tokens.shape[0])
        if self.training and self.conditions.is_conditional:
            prefix = self.drop_conditions(prefix)
        condition = self.condition_embeddings(image, tokens.shape[0])
        logits = self.logits(prefix, tokens.masked_fill(mask, self.mask_id), condition=condition)
        # only the masked positions count: a visible token's own id is in the input, predicting it teaches nothing.
        # Visible targets become ignore_index, not a boolean selection, whose size the host would have to read.
        targets = tokens.masked_fill(~mask, IGNORE)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE)
        return PriorOutput(loss=loss, logits=logits)

    def condition_embeddings(self, image: torch.Tensor | None, n: int) -> torch.Tensor | None:
        """The image condition's embeddings (n, seq_len, dim) in the backbone's dtype, dropped to the null at random
        in training; None for a prior without an image condition (which refuses ``image=`` in one line)."""
        if self.image_condition is None:
            if image is not None:
                self.check_condition_image(image, n)  # raises: this prior takes no image
            return None
        condition = self.image_condition_embeddings(image, n)
        if self.training:
            condition = self.drop_image_condition(condition)
        return condition.to(self.backbone.embeddings.word_embeddings.weight.dtype)

    def check_mask(self, mask: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """A caller's ``mask`` for ``tokens``, on their device; "at least one True" is checked without a host read."""
        message = (f"mask must be a bool tensor {tuple(tokens.shape)} with at least one True (masked) position, got "
                   f"{mask.dtype} {tuple(mask.shape)}.")
        if mask.shape != tokens.shape or mask.dtype != torch.bool:
            raise ValueError(message)
        mask = mask.to(tokens.device)
        self.check_on_device(mask.any(), message)
        return mask

    def draw_mask(self, batch: int) -> torch.Tensor:
        """The training mask (batch, seq_len) of the schedule; see forward() for where its randomness comes from."""
        if self.training:
            return training_mask(batch, self.seq_len, self.mask_schedule, self.device)
        # a CPU generator: the same masks wherever the model runs
        generator = torch.Generator().manual_seed(EVAL_MASK_SEED)
        return training_mask(batch, self.seq_len, self.mask_schedule, self.device, generator)

    @torch.inference_mode()
    def generate(self, n: int, labels=None, cfg_scale: float = 1.0, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None, generator: torch.Generator | None = None,
                 known: torch.Tensor | None = None, steps: int | None = None, image: torch.Tensor | None = None,
                 cfg_target: str = "both") -> torch.Tensor:
        """Sample ``n`` token sequences by parallel iterative decoding -> long (n, seq_len) in [0, vocab_size).

        labels       one label for all n, or one per sample (ids, class names, "blue hair,red eyes" tags; None = null)
        cfg_scale    classifier-free guidance scale; 1 = none. s != 1 runs [conditional; null] halves in one batch
        temperature  softmax temperature; 0 = greedy
        top_k/top_p  sample among the k likeliest tokens / the smallest set holding probability p
        generator    a torch.Generator: the same seed gives the same tokens
        known        (n or 1, seq_len) or (n or 1, h, w) tokens to keep, -1 where to sample (inpainting); kept tokens
                     are visible context in every pass, so a hole sees the image on all its sides
        steps        decoding passes (default: the prior's ``steps``); each pass is one backbone call
        image        condition images (1 or n, C, H, W), as the prior's condition made them (None = the null image:
                     unconditional in the image); only for a prior built with image_condition
        cfg_target   what the unconditional half of guidance drops: "both" (labels and image), "image" (keeps the
                     labels) or "labels" (keeps the image)
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}.")
        check_sampling_options(temperature, top_k, top_p, cfg_scale)
        steps = self.steps if steps is None else steps
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive int (decoding passes), got {steps!r}.")
        guided = self.check_guidance(cfg_scale, cfg_target)
        prefix = self.condition_tokens(labels, n)
        if known is None:
            known = torch.full((n, self.seq_len), -1, dtype=torch.long, device=self.device)
        else:
            known = self.check_known(known, n)
        with evaluating(self):
            condition = self.condition_embeddings(image, n)
            if guided:  # one batch: [conditional; unconditional]
                prefix, condition = self.guidance_rows(prefix, condition, cfg_target)
            return self.decode(prefix, known, steps, cfg_scale if guided else None, temperature, top_k, top_p,
                               generator, condition)

    def decode(self, prefix: torch.Tensor, known: torch.Tensor, steps: int, cfg_scale: float | None,
               temperature: float, top_k: int | None, top_p: float | None,
               generator: torch.Generator | None, condition: torch.Tensor | None = None) -> torch.Tensor:
        """MaskGIT's loop. Each pass predicts every masked position, samples a token for each, and keeps the
        sampled tokens it is most confident of; the rest are masked again for the next pass. Confidence is the
        log-probability of the sampled token plus Gumbel noise scaled by choice_temperature * (1 - (t + 1) / steps):
        random choices early (diverse layouts), greedy ones late (coherent details)."""
        masked = known < 0
        ids = known.masked_fill(masked, self.mask_id)
        unknown = masked.sum(1)
        if not unknown.any():
            return ids
        for t in range(steps):
            # the SAME partial image for the conditional and the unconditional half of each sample
            image_ids = torch.cat([ids, ids]) if cfg_scale is not None else ids
            rows = torch.cat([masked, masked]) if cfg_scale is not None else masked
            # guidance combines the halves before any invalid-token masking (-inf - -inf is NaN): process_logits
            logits = process_logits(self.logits(prefix, image_ids, rows, condition), self.vocab_size, cfg_scale,
                                    temperature, top_k, top_p)
            token = sample_from_logits(logits, generator, greedy=temperature == 0)
            confidence = torch.full(ids.shape, float("inf"), device=ids.device)  # decided tokens: never re-masked
            confidence[masked] = logits.log_softmax(-1).gather(1, token[:, None])[:, 0]
            anneal = self.choice_temperature * (1 - (t + 1) / steps)
            if anneal > 0:
                confidence[masked] += anneal * gumbel_noise(token.shape, generator, ids.device)
            ids = ids.masked_scatter(masked, token)
            keep_masked = masked_after_pass(t, steps, unknown, masked.sum(1), self.mask_schedule)
            masked = lowest(confidence, keep_masked) & masked
            ids = ids.masked_fill(masked, self.mask_id)
        return ids

    def extra_repr(self) -> str:
        image = f", image_condition={self.image_condition['name']}" if self.image_condition is not None else ""
        return (f"vocab_size={self.vocab_size}, seq_len={self.seq_len}, conditions={self.conditions.mode}, "
                f"prefix_len={self.prefix_len}, steps={self.steps}, mask_schedule={self.mask_schedule!r}{image}")


def check_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")
