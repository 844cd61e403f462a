"""Two stages in one object: a prior samples token grids, the tokenizer decodes them into images."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from PIL import Image

from .core.serialization import load_component
from .tokenizer import Tokenizer


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """Images (B, 3, H, W) in [-1, 1] -> PIL RGB images."""
    pixels = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu()
    return [Image.fromarray(array.numpy()) for array in pixels]


def from_pil(image: Image.Image, size: tuple[int, int]) -> torch.Tensor:
    """A PIL image -> (1, 3, h, w) in [-1, 1], resized to ``size`` (height, width)."""
    from torchvision.transforms.functional import pil_to_tensor

    from .data.images import to_rgb

    return (pil_to_tensor(to_rgb(image).resize(size[::-1], Image.BICUBIC)).float() / 127.5 - 1)[None]


def make_grid_image(images: list[Image.Image], columns: int | None = None, padding: int = 2) -> Image.Image:
    """Paste equally sized images into one grid image."""
    columns = columns or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    w, h = images[0].size
    grid = Image.new("RGB", (columns * (w + padding) + padding, rows * (h + padding) + padding), "white")
    for i, image in enumerate(images):
        grid.paste(image, (padding + (i % columns) * (w + padding), padding + (i // columns) * (h + padding)))
    return grid


class Pipeline:
    """``Pipeline.from_pretrained(tokenizer_dir, prior_dir)(n, labels=..., cfg_scale=..., seed=...)`` -> images."""

    def __init__(self, tokenizer: Tokenizer, prior, grid: tuple[int, int] | None = None):
        self.tokenizer, self.prior = tokenizer.eval(), prior.eval()
        if grid is None:
            side = math.isqrt(prior.seq_len)
            if side * side != prior.seq_len:
                raise ValueError(f"The prior's seq_len {prior.seq_len} is not a square; pass grid=(h, w).")
            grid = (side, side)
        if grid[0] * grid[1] != prior.seq_len:
            raise ValueError(f"grid {grid} holds {grid[0] * grid[1]} tokens, the prior makes {prior.seq_len}.")
        if prior.vocab_size != tokenizer.quantizer.codebook_size:
            raise ValueError(f"The prior models {prior.vocab_size} tokens but the tokenizer has "
                             f"{tokenizer.quantizer.codebook_size} codes: they were not trained together.")
        self.grid = tuple(grid)

    @classmethod
    def from_pretrained(cls, tokenizer_dir, prior_dir, device="cpu") -> "Pipeline":
        return cls(Tokenizer.from_pretrained(tokenizer_dir, device=device), load_component(prior_dir, device=device))

    @property
    def device(self) -> torch.device:
        return next(self.tokenizer.parameters()).device

    @property
    def image_size(self) -> tuple[int, int]:
        f = self.tokenizer.downsample
        return self.grid[0] * f, self.grid[1] * f

    def generator(self, seed: int | None) -> torch.Generator | None:
        return None if seed is None else torch.Generator(self.device).manual_seed(seed)

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.tokenizer.decode(tokens.view(-1, *self.grid))

    @torch.inference_mode()
    def __call__(self, n: int = 1, labels=None, cfg_scale: float = 1.0, seed: int | None = None,
                 temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                 batch_size: int = 64) -> list[Image.Image]:
        """Sample ``n`` images; ``labels`` as the prior accepts them (one for all, or one per image)."""
        generator = self.generator(seed)
        per_image = labels if isinstance(labels, (list, tuple, torch.Tensor)) else None
        images = []
        for start in range(0, n, batch_size):
            count = min(batch_size, n - start)
            batch_labels = per_image[start:start + count] if per_image is not None else labels
            tokens = self.prior.generate(count, labels=batch_labels, cfg_scale=cfg_scale, temperature=temperature,
                                         top_k=top_k, top_p=top_p, generator=generator)
            images += to_pil(self.decode(tokens))
        return images

    @torch.inference_mode()
    def inpaint(self, image: Image.Image, mask: Image.Image, labels=None, cfg_scale: float = 1.0,
                seed: int | None = None, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None) -> Image.Image:
        """Re-sample the tokens under the white part of ``mask`` (raster order, every other token kept) and decode.

        The image is resized to the pipeline's image size; a token is re-sampled when any pixel of its cell is
        masked."""
        size = self.image_size
        tokens = self.tokenizer.encode(from_pil(image, size).to(self.device)).flatten(1)
        masked = from_pil(mask.convert("L"), size)[:, :1].to(self.device) > 0  # white (> mid-grey) = repair
        cells = F.max_pool2d(masked.float(), self.tokenizer.downsample).flatten(1).bool()
        known = torch.where(cells, torch.full_like(tokens, -1), tokens)
        sampled = self.prior.generate(1, labels=labels, cfg_scale=cfg_scale, temperature=temperature, top_k=top_k,
                                      top_p=top_p, generator=self.generator(seed), known=known)
        return to_pil(self.decode(sampled))[0]
