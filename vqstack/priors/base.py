"""What every prior over a tokenizer's image tokens shares: its output type, its conditions and its input checks.

A prior subclasses :class:`Prior`, calls :meth:`Prior.init_conditions` in its constructor, builds its network, and
implements ``forward(tokens, labels=None) -> PriorOutput`` and ``generate(n, labels=None, cfg_scale=1.0,
temperature=1.0, top_k=None, top_p=None, generator=None, known=None, ...)``. The conditions (one start token, a class
token, or one token per attribute group; their null tokens for classifier-free guidance) are the same for every
prior, so one label means the same thing to ``ar`` and to a plugin's prior.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .conditions import ConditionVocab


@dataclass
class PriorOutput:
    loss: torch.Tensor    # scalar: the prior's training loss (mean cross-entropy of the tokens it predicts)
    logits: torch.Tensor  # (B, seq_len, vocab_size): the prediction for each image position


def check_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")


def check_probability(name: str, value) -> None:
    if not 0 <= value < 1:
        raise ValueError(f"{name} must be in [0, 1), got {value}.")


class Prior(nn.Module):
    """Base of the priors: conditions, the condition prefix, CFG dropout, token checks.

    ``causal``: True for a raster-order next-token model (``ar``), whose likelihoods ``Pipeline.inpaint`` may use
    to rank several fills; False for a prior that sees every position (``maskgit``)."""

    causal = False
    vocab_size: int
    seq_len: int

    def init_conditions(self, vocab_size: int, seq_len: int, num_classes: int = 0,
                        class_names: list[str] | None = None, attributes: dict[str, list[str]] | None = None,
                        cond_dropout: float = 0.1, group_dropout: float = 0.1) -> None:
        """Check and store the sizes and conditions; condition ids follow the ``vocab_size`` image tokens."""
        check_positive_int("vocab_size", vocab_size)
        check_positive_int("seq_len", seq_len)
        check_probability("cond_dropout", cond_dropout)
        check_probability("group_dropout", group_dropout)
        self.vocab_size, self.seq_len = vocab_size, seq_len
        self.cond_dropout, self.group_dropout = cond_dropout, group_dropout
        self.conditions = ConditionVocab(num_classes, class_names, attributes)
        self.num_classes = self.conditions.num_classes
        self.prefix_len = self.conditions.prefix_len
        self.register_buffer("null_prefix", self.conditions.null + vocab_size, persistent=False)

    @property
    def device(self) -> torch.device:
        return self.null_prefix.device

    def condition_tokens(self, labels, n: int) -> torch.Tensor:
        """The condition prefix (n, prefix_len) of ``labels``, as input-vocabulary ids."""
        return (self.conditions.encode(labels, n) + self.vocab_size).to(self.device)

    def check_tokens(self, tokens: torch.Tensor, what: str = "tokens") -> torch.Tensor:
        """(B, seq_len) or (B, h, w) integer tokens -> (B, seq_len) long, with a clear error otherwise."""
        if not isinstance(tokens, torch.Tensor) or tokens.is_floating_point() or tokens.dim() < 2:
            got = f"{tokens.dtype} {tuple(tokens.shape)}" if isinstance(tokens, torch.Tensor) else type(tokens).__name__
            raise ValueError(f"{what} must be an integer tensor (B, seq_len) or (B, h, w), got {got}.")
        tokens = tokens.reshape(tokens.shape[0], -1).long()
        if tokens.shape[1] != self.seq_len:
            raise ValueError(f"{what} hold {tokens.shape[1]} tokens per sample, this prior models seq_len="
                             f"{self.seq_len}.")
        return tokens

    def check_range(self, tokens: torch.Tensor) -> None:
        """Training tokens must be image tokens of this prior's vocabulary."""
        low, high = tokens.aminmax()
        if low < 0 or high >= self.vocab_size:
            raise ValueError(f"tokens must lie in [0, {self.vocab_size}), got [{int(low)}, {int(high)}]: was the "
                             f"prior built for this tokenizer's codebook_size?")

    def check_known(self, known: torch.Tensor, n: int) -> torch.Tensor:
        """``known`` for ``generate``: (1 or n, seq_len) or (1 or n, h, w), -1 where to sample -> (n, seq_len)."""
        known = self.check_tokens(known.to(self.device), "known")
        if known.shape[0] not in (1, n):
            raise ValueError(f"known has {known.shape[0]} rows for n={n} samples; give 1 or n.")
        if known.min() < -1 or known.max() >= self.vocab_size:
            raise ValueError(f"known tokens must be -1 (unknown) or in [0, {self.vocab_size}).")
        return known.expand(n, -1)

    def drop_conditions(self, prefix: torch.Tensor) -> torch.Tensor:
        """Training only: replace condition tokens by their nulls at random, so one network also learns the
        unconditional model (whole prefix, ``cond_dropout``) that classifier-free guidance needs and, with several
        attribute groups, every partial condition (each group on its own, ``group_dropout``)."""
        drop = torch.rand(prefix.shape[0], 1, device=prefix.device) < self.cond_dropout
        if self.prefix_len > 1 and self.group_dropout > 0:
            drop = drop | (torch.rand(prefix.shape, device=prefix.device) < self.group_dropout)
        return torch.where(drop, self.null_prefix, prefix)
