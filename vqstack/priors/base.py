"""What every prior over a tokenizer's image tokens shares: its output type, its conditions and its input checks.

A prior subclasses :class:`Prior`, calls :meth:`Prior.init_conditions` in its constructor, builds its network, and
implements ``forward(tokens, labels=None) -> PriorOutput`` and ``generate(n, labels=None, cfg_scale=1.0,
temperature=1.0, top_k=None, top_p=None, generator=None, known=None, ...)``. The conditions (one start token, a class
token, or one token per attribute group; their null tokens for classifier-free guidance) are the same for every
prior, so one label means the same thing to ``ar`` and to a plugin's prior.

What a prior must get right, and ``ar`` (and ``maskgit``) do:

- Input ids. Image tokens are ``[0, vocab_size)``; the ``conditions.num_tokens`` condition ids follow them,
  ``[vocab_size, vocab_size + conditions.num_tokens)``: 1 (the start token, also the null) when unconditional,
  ``num_classes + 1`` (the classes, then the null) when class-conditional, and per attribute group its values plus
  a null. An input embedding needs ``vocab_size + conditions.num_tokens`` rows, plus any ids of the prior's own
  after them (``maskgit``'s [MASK] is ``vocab_size + conditions.num_tokens``). ``condition_tokens`` gives the prefix
  of ``prefix_len`` ids, already offset; the head predicts image tokens only.
- Alignment. ``logits[:, i]`` scores ``tokens[:, i]`` itself, not the token after it: the shift is inside the
  prior. A causal prior computes it from the condition and ``tokens[:, :i]`` only (``ar`` feeds
  ``[prefix; tokens[:, :-1]]`` and reads from position ``prefix_len - 1``), so
  ``logits.log_softmax(-1).gather(-1, tokens[..., None])`` is each token's log-likelihood, which
  ``Pipeline.inpaint``'s ranking of fills sums; the loss is ``cross_entropy(logits, tokens)`` over the positions
  the prior predicts, which ``vqstack eval`` reports as the per-token NLL of a causal prior.
- CFG dropout. ``forward`` calls ``drop_conditions`` itself, in training and when conditional:
  ``if self.training and self.conditions.is_conditional: prefix = self.drop_conditions(prefix)``. Nothing else
  does; without it the null condition is never trained and guidance has nothing to push away from.
- Guidance. ``condition_tokens(None, n)`` (the same ids as ``null_prefix.expand(n, -1)``) is the unconditional
  half: run ``[condition_tokens(labels, n); condition_tokens(None, n)]`` as one batch, combine with
  ``process_logits(logits, vocab_size, cfg_scale, ...)`` (guidance first, then invalid-token masking), and give
  both halves the same sampled token.
- No host syncs in training. ``check_range`` and :meth:`Prior.check_on_device` check without reading the device;
  select positions with ``torch.where`` / ``masked_fill`` / ``ignore_index``, not boolean indexing.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .conditions import ConditionVocab


@dataclass
class PriorOutput:
    loss: torch.Tensor    # scalar: the prior's training loss (mean cross-entropy of the tokens it predicts)
    logits: torch.Tensor  # (B, seq_len, vocab_size): logits[:, i] scores tokens[:, i] (not the next token)


def check_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")


def check_probability(name: str, value) -> None:
    if not 0 <= value < 1:
        raise ValueError(f"{name} must be in [0, 1), got {value}.")


class Prior(nn.Module):
    """Base of the priors: conditions, the condition prefix, CFG dropout, token checks (the module docstring says
    what a subclass must get right: input ids, logits alignment, CFG dropout, guidance, no host syncs).

    ``causal``: True for a raster-order next-token model (``ar``), whose ``logits[:, i]`` depends on
    ``tokens[:, :i]`` only, so ``Pipeline.inpaint`` may rank several fills by their likelihood and token NLL is
    defined; False for a prior that sees every position (``maskgit``).

    ``conditions.num_tokens``: how many condition ids follow the ``vocab_size`` image ids (see the module docstring);
    ``prefix_len``: how many of them a sample's prefix holds; ``null_prefix``: the null (unconditional) prefix."""

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
        """The condition prefix (n, prefix_len) of ``labels``, as input-vocabulary ids in [vocab_size, vocab_size +
        conditions.num_tokens). ``condition_tokens(None, n)`` is the null prefix: the unconditional half of
        classifier-free guidance (the same ids as ``null_prefix.expand(n, -1)``)."""
        tokens = self.conditions.encode(labels, n) + self.vocab_size
        if self.device.type == "cuda":  # pinned + non_blocking: the host does not wait for the copy every step
            tokens = tokens.pin_memory()
        return tokens.to(self.device, non_blocking=True)

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
        """Training tokens must be image tokens of this prior's vocabulary. Checked without reading the tokens back
        to the host (a training step must not wait on the device): a ``ValueError`` at once on the CPU, a
        device-side assert on a GPU."""
        low, high = tokens.aminmax()
        message = (f"tokens must lie in [0, {self.vocab_size}): was the prior built for this tokenizer's "
                   f"codebook_size?")
        self.check_on_device((low >= 0) & (high < self.vocab_size), message)

    @staticmethod
    def check_on_device(ok: torch.Tensor, message: str) -> None:
        """Raise ``ValueError(message)`` unless the one-element bool tensor ``ok`` is True, without a host sync:
        the CPU checks at once; CUDA queues an asynchronous assert, which fails a later CUDA call (it cannot say
        ``message``, and the process must restart) instead of stalling every step to raise a clear error."""
        if ok.device.type not in ("cpu", "cuda"):  # no asynchronous assert elsewhere: read it (one sync)
            if not bool(ok):
                raise ValueError(message)
            return
        try:
            torch._assert_async(ok, message)
        except RuntimeError:  # only the CPU raises here, at once
            raise ValueError(message) from None

    def check_known(self, known: torch.Tensor, n: int) -> torch.Tensor:
        """``known`` for ``generate``: (1 or n, seq_len) or (1 or n, h, w), -1 where to sample -> (n, seq_len)."""
        known = self.check_tokens(known.to(self.device), "known")
        if known.shape[0] not in (1, n):
            raise ValueError(f"known has {known.shape[0]} rows for n={n} samples; give 1 or n.")
        if known.min() < -1 or known.max() >= self.vocab_size:
            raise ValueError(f"known tokens must be -1 (unknown) or in [0, {self.vocab_size}).")
        return known.expand(n, -1)

    def drop_conditions(self, prefix: torch.Tensor) -> torch.Tensor:
        """Call it in ``forward``, in training, on a conditional prior's prefix (nothing calls it for you): replace
        condition tokens by their nulls at random, so one network also learns the unconditional model (whole
        prefix, ``cond_dropout``) that classifier-free guidance needs and, with several attribute groups, every
        partial condition (each group on its own, ``group_dropout``)."""
        drop = torch.rand(prefix.shape[0], 1, device=prefix.device) < self.cond_dropout
        if self.prefix_len > 1 and self.group_dropout > 0:
            drop = drop | (torch.rand(prefix.shape, device=prefix.device) < self.group_dropout)
        return torch.where(drop, self.null_prefix, prefix)
