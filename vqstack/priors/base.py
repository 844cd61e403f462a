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
  ``[prefix; tokens[:, :-1]]`` and reads from position ``prefix_len - 1``; ``context_len - 1`` with an image
  condition read as a prefix), so
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

An image condition (image-to-image translation, taming-transformers' "cond stage"), optional: a prior that takes
``image_condition`` (a condition's ``to_config()``), ``image_dropout``, ``patch_size`` and ``grid`` calls
:meth:`Prior.init_image_condition` after ``init_conditions``; that builds ``image_embed``, the learned patch
embedding of vqstack/priors/image_condition.py (condition images (B, C, h*f, w*f) -> (B, h*w, dim) on the token
grid, and a learned null). Then:

- ``forward(tokens, labels=None, image=None)``: ``image_condition_embeddings(image, B)`` (the null when None), then
  in training ``drop_image_condition`` (each row becomes the null with probability ``image_dropout``, drawn apart
  from the labels' dropout), then the prior reads them: ``ar`` as ``h*w`` positions between the label prefix and
  the image tokens (``image_condition_len`` positions, ``context_len = prefix_len + image_condition_len`` before
  the first image token), ``maskgit`` added to each image position's input.
- ``generate(..., image=None, cfg_target="both")``: ``check_guidance(cfg_scale, cfg_target)`` replaces the old
  "conditional?" check; ``guidance_rows(prefix, embeddings, cfg_target)`` gives the [conditional; unconditional]
  halves ("both": null labels and null image; "image": keep the labels, null image; "labels": keep the image,
  null labels).
- A prior built without ``image_condition`` is exactly the prior it was before (no new parameters, no new random
  draws, the same ids path); given ``image=`` it refuses in one line.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .conditions import ConditionVocab
from .image_condition import CFG_TARGETS, ImageConditionEmbedding, check_grid


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
    # the image condition (init_image_condition): none unless a prior is built with one
    image_condition: dict | None = None   # the condition's to_config(), as recorded in the prior's config
    condition_channels: int = 0           # C of the condition images it reads
    reference: bool = False               # whether it also reads a reference picture (conditions/reference.py)
    image_condition_len: int = 0          # sequence positions the condition takes (ar: h*w; maskgit adds it: 0)

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

    def init_image_condition(self, image_condition: dict | str | None, dim: int, image_dropout: float = 0.1,
                             patch_size: int | None = None, grid: list[int] | None = None,
                             init_std: float = 0.02, reference: bool = False) -> None:
        """Check and store the image condition a prior reads; build its patch embedding ``image_embed``. Call it
        after :meth:`init_conditions`. Without ``image_condition`` it builds nothing and draws no random number,
        so the prior is exactly the one built without these arguments.

        image_condition  a condition's ``to_config()`` (or its registry name): recorded, so a saved prior knows
                         which condition it was trained for (:meth:`check_image_condition`)
        dim              the backbone's width: what each condition cell embeds to
        image_dropout    training: probability a sample's condition image is replaced by the null (CFG)
        patch_size       condition pixels per token cell and side: the tokenizer's downsampling f
        grid             [h, w] token grid (h * w = seq_len; default square): condition images are (C, h*f, w*f)
        reference        also read a reference picture's colours: REFERENCE_CHANNELS more channels behind the
                         condition's (vqstack.conditions.reference.with_reference builds them)"""
        check_probability("image_dropout", image_dropout)
        self.image_dropout = image_dropout
        self.image_embed = None
        if not isinstance(reference, bool):
            raise ValueError(f"reference must be True or False, got {reference!r}.")
        self.reference = reference
        if image_condition is None:
            if reference:
                raise ValueError("reference=True needs an image_condition: the reference is read beside it.")
            return
        from ..conditions.base import Condition, build_condition  # late: conditions import the data modules
        from ..conditions.reference import REFERENCE_CHANNELS

        if isinstance(image_condition, Condition):
            raise ValueError("image_condition must be a condition's to_config() (JSON, saved with the prior), not "
                             "the condition itself: pass condition.to_config().")
        if patch_size is None:
            raise ValueError("image_condition needs patch_size: the tokenizer's downsampling f (condition images "
                             "are f times the token grid).")
        check_positive_int("patch_size", patch_size)
        condition = build_condition(image_condition)
        self.image_condition = condition.to_config()  # defaults filled in: what check_same_condition compares
        self.condition_channels = int(condition.channels) + (REFERENCE_CHANNELS if reference else 0)
        self.patch_size = patch_size
        self.grid = check_grid(grid, self.seq_len)
        self.image_embed = ImageConditionEmbedding(self.condition_channels, dim, patch_size, self.grid, init_std)

    @property
    def context_len(self) -> int:
        """Sequence positions before the first image token's input: the ``prefix_len`` label ids, then the
        ``image_condition_len`` condition embeddings of a prior that reads them as a prefix (``ar``)."""
        return self.prefix_len + self.image_condition_len

    @property
    def condition_size(self) -> tuple[int, int] | None:
        """(H, W) of the condition images this prior reads (the image size), None without an image condition."""
        return None if self.image_condition is None else self.image_embed.image_size

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

    # --- the image condition -----------------------------------------------------------------------------------

    def check_image_condition(self, condition, what: str = "This prior") -> None:
        """Refuse, in one line naming both, a condition (a ``Condition``, its ``to_config()`` or a name) other than
        the one this prior was trained for, or any condition for a prior trained without one."""
        from ..conditions.base import check_same_condition

        if self.image_condition is None:
            raise ValueError(f"{what} was trained without an image condition (image_condition=None), so it reads no "
                             f"condition image; use a prior trained for one.")
        check_same_condition(self.image_condition, condition, what)

    def build_image_condition(self):
        """The condition (a ``vqstack.Condition``) this prior was trained for, rebuilt from its recorded config."""
        from ..conditions.base import build_condition

        if self.image_condition is None:
            raise ValueError("This prior was trained without an image condition (image_condition=None).")
        return build_condition(self.image_condition)

    def check_condition_image(self, image, n: int) -> torch.Tensor:
        """``image`` for ``forward`` / ``generate``: float condition images (1 or n, C, H, W) or one (C, H, W), as
        the condition computed them, -> (1 or n, C, H, W) on the prior's device and dtype; one ``ValueError``
        naming the expected and the given shape otherwise. Values are not read (no host sync)."""
        if self.image_condition is None:
            got = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
            raise ValueError(f"This prior was built without an image condition (image_condition=None), so it takes "
                             f"no image= (got {got}); pass image=None, or use a prior trained for a condition.")
        (h, w), c = self.condition_size, self.condition_channels
        expected = f"(1 or {n}, {c}, {h}, {w})"
        if not isinstance(image, torch.Tensor) or not image.is_floating_point() or image.dim() not in (3, 4):
            got = f"{image.dtype} {tuple(image.shape)}" if isinstance(image, torch.Tensor) else type(image).__name__
            raise ValueError(f"image must be float condition images {expected} ({self.image_condition['name']}), "
                             f"got {got}.")
        batch = image if image.dim() == 4 else image[None]
        if tuple(batch.shape[1:]) != (c, h, w) or batch.shape[0] not in (1, n):
            raise ValueError(f"image must be condition images {expected}: {c} channel(s) of "
                             f"{self.image_condition['name']} at {h}x{w} ({self.grid[0]}x{self.grid[1]} tokens of "
                             f"{self.patch_size} px), got {tuple(image.shape)}.")
        return batch.to(self.device, self.image_embed.null.dtype)

    def image_condition_embeddings(self, image, n: int) -> torch.Tensor:
        """(n, h*w, dim): the embeddings of condition images ``image`` (1 or n rows; one row is embedded once and
        broadcast), or of the null condition when ``image`` is None (unconditional in the image). Dropout is the
        caller's: ``forward`` calls :meth:`drop_image_condition` in training."""
        if image is None:
            if self.image_condition is None:
                raise ValueError("This prior has no image condition.")
            return self.image_embed.null_embeddings(n)
        return self.image_embed(self.check_condition_image(image, n)).expand(n, -1, -1)

    def drop_image_condition(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Call it in ``forward``, in training: each sample's condition embeddings become the null with
        probability ``image_dropout``, drawn apart from the labels' ``cond_dropout`` (so "image, no labels",
        "labels, no image" and "neither" are all trained, for each ``cfg_target``)."""
        if self.image_dropout <= 0:
            return embeddings
        drop = torch.rand(embeddings.shape[0], 1, 1, device=embeddings.device) < self.image_dropout
        return torch.where(drop, self.image_embed.null.to(embeddings.dtype), embeddings)

    def check_guidance(self, cfg_scale: float, cfg_target: str = "both") -> bool:
        """Whether ``generate`` guides (``cfg_scale != 1``); refuses in one line a ``cfg_target`` not in
        ("both", "image", "labels") and guidance on a condition this prior does not have."""
        if cfg_target not in CFG_TARGETS:
            raise ValueError(f"cfg_target must be one of {', '.join(map(repr, CFG_TARGETS))} (which condition the "
                             f"unconditional half drops), got {cfg_target!r}.")
        if cfg_scale == 1:
            return False
        labelled, imaged = self.conditions.is_conditional, self.image_condition is not None
        if cfg_target == "both" and not (labelled or imaged):
            raise ValueError(f"cfg_scale={cfg_scale} needs a conditional prior (num_classes > 0 or attributes); this "
                             f"one is unconditional. Use cfg_scale=1.")
        if cfg_target == "image" and not imaged:
            raise ValueError(f"cfg_target='image' guides on the condition image; this prior has none (built without "
                             f"image_condition): use cfg_target='labels' or 'both'.")
        if cfg_target == "labels" and not labelled:
            raise ValueError(f"cfg_target='labels' guides on the labels; this prior takes none (num_classes=0, no "
                             f"attributes): use cfg_target='image' or 'both'.")
        return True

    def guidance_rows(self, prefix: torch.Tensor, embeddings: torch.Tensor | None, cfg_target: str = "both"):
        """The [conditional; unconditional] rows of one guided batch: (prefix (2n, P), embeddings (2n, h*w, dim)
        or None). The unconditional half drops the labels and the image ("both"), the image only ("image") or the
        labels only ("labels"); without an image condition "both" is the null prefix as before."""
        n = prefix.shape[0]
        prefix = torch.cat([prefix, prefix if cfg_target == "image" else self.null_prefix.expand(n, -1)])
        if embeddings is not None:
            null = embeddings if cfg_target == "labels" else self.image_embed.null_embeddings(n).to(embeddings.dtype)
            embeddings = torch.cat([embeddings, null])
        return prefix, embeddings
