"""Training pairs of a translator: an image's tokens with the condition image made from the same image on the fly.

The tokens come from the encoded token set (made once, as for a prior); the condition is drawn per sample and
epoch from (seed, epoch, index), so every worker and every resumed run sees the same line style for the same
sample, and each epoch another one (a user's line art never matches one filter).
"""
from __future__ import annotations

import torch

from ..data.degradations import stable_seed
from .reference import reference_view, with_reference


class ConditionedTokens(torch.utils.data.Dataset):
    """``(tokens, index, condition image)`` per sample.

    tokens             (N, seq_len) long: the encoded images
    images             an ImageDataset (unflipped: the tokens were encoded unflipped) read by ``image_rows``
    image_rows         the ImageDataset row each token row encodes
    condition          a Condition: image -> condition image
    reference          also stack a reference (the same face after a geometric change, conditions/reference.py)
    reference_dropout  probability a sample gets no reference, so the prior paints without one too
    seed               the seed of the per-sample draws
    """

    def __init__(self, tokens: torch.Tensor, images, image_rows, condition, reference: bool = False,
                 reference_dropout: float = 0.5, seed: int = 0):
        if len(tokens) != len(image_rows):
            raise ValueError(f"{len(tokens)} token rows but {len(image_rows)} image rows.")
        if not 0 <= reference_dropout <= 1:
            raise ValueError(f"reference_dropout must be in [0, 1], got {reference_dropout}.")
        self.tokens, self.images, self.image_rows = tokens, images, list(image_rows)
        self.condition, self.reference, self.reference_dropout = condition, reference, reference_dropout
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.tokens)

    def condition_of(self, pixels: torch.Tensor, index: int, epoch: int) -> torch.Tensor:
        """The condition image of sample ``index`` (pixels (3, H, W)) at ``epoch``, reference channels included."""
        condition = self.condition.sample(pixels, index, epoch, self.seed)
        if not self.reference:
            return condition
        generator = torch.Generator().manual_seed(stable_seed("reference", self.seed, epoch, index))
        present = torch.rand((), generator=generator) >= self.reference_dropout
        view = reference_view(pixels, generator)
        return with_reference(condition[None], view[None], present.view(1))[0]

    def __getitem__(self, index: int):
        pixels = self.images.pixels(self.image_rows[index])
        return self.tokens[index], index, self.condition_of(pixels, index, self.epoch)
