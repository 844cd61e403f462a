"""Restoration for users: ``RestorePipeline`` (a tokenizer plus the restorer trained for it) and the folder loop
behind ``vqstack restore``.

    pipe = vqstack.RestorePipeline.from_pretrained("runs/anime/tokenizer", "runs/restore/restorer")
    clean = pipe(Image.open("damaged.png"), fidelity=0.5)             # same size as the input
    big = pipe(Image.open("small.png"), upscale=4)                    # 4x the input size, restored in tiles

The restorer sees square images of one size (``pipe.image_size``, the tokenizer's training resolution). An image
of that size is restored as it is. Without ``upscale`` any other image is resized (bicubic, antialiased) to that
square, restored and resized back, so the output keeps the input's size. With ``upscale=F`` the image is enlarged
bicubically by F and restored in overlapping tiles of ``image_size`` that are blended with linear ramps, so a large
or non-square image is restored at its own resolution (``upscale=1`` does that without enlarging).
"""
from __future__ import annotations

import math
import numbers
import time
from pathlib import Path

import torch
from PIL import Image

from ..core.serialization import read_config
from ..restorers.base import blend_codes
from ..restorers.saving import load_restorer
from ..tokenizer import Tokenizer
from .files import image_pairs, read_image, save_image
from .images import from_pil, resize, to_pil

DEFAULT_FIDELITY = 0.5  # CodeFormer's usual w: half the learned clean codes, half the input's own




def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Offsets of tiles of ``tile`` pixels covering ``length`` >= ``tile`` pixels, consecutive tiles overlapping by
    at least ``overlap``; the last tile ends at the edge."""
    stride = tile - overlap
    count = math.ceil((length - tile) / stride) + 1
    return sorted({min(i * stride, length - tile) for i in range(count)})


def ramp(tile: int, overlap: int, device=None) -> torch.Tensor:
    """(tile,) blending weight: rising linearly over ``overlap`` pixels at each end, 1 between. Two tiles
    overlapping by exactly ``overlap`` pixels have weights summing to 1 there (a cross-fade)."""
    distance = torch.arange(tile, device=device)
    distance = torch.minimum(distance, distance.flip(0))  # pixels to the nearer end
    return ((distance + 1) / (overlap + 1)).clamp(max=1.0)


def check_options(fidelity, upscale, batch_size) -> None:
    """One clear ValueError for an option out of range, before any work is done."""
    if isinstance(fidelity, bool) or not isinstance(fidelity, numbers.Real) or not 0.0 <= float(fidelity) <= 1.0:
        raise ValueError(f"fidelity must be in [0, 1] (0: the predicted codes, 1: the input's own codes), "
                         f"got {fidelity!r}.")
    if upscale is not None and (isinstance(upscale, bool) or not isinstance(upscale, numbers.Integral) or upscale < 1):
        raise ValueError(f"upscale must be an int >= 1 (e.g. 2 or 4: the output is that many times the input's "
                         f"size; 1 restores in tiles at the input's size), or None to keep the input's size; "
                         f"got {upscale!r}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}.")


class _Plan:
    """One image's crops of the restorer's size and how to put their restorations back together."""

    def __init__(self, image: torch.Tensor, size: int, upscale: int | None, overlap: int):
        self.size, self.overlap = size, overlap
        height, width = image.shape[-2:]
        if upscale is None:  # the whole image as one square, resized back afterwards
            self.out_size, self.work_size = (height, width), (size, size)
            self.rows = self.columns = [0]
        else:
            self.out_size = (height * upscale, width * upscale)
            # a side shorter than a tile is stretched to one tile and shrunk back after restoring
            self.work_size = tuple(max(side, size) for side in self.out_size)
            self.rows = tile_starts(self.work_size[0], size, overlap)
            self.columns = tile_starts(self.work_size[1], size, overlap)
        work = resize(resize(image[None], self.out_size), self.work_size)[0]
        self.crops = [work[:, top:top + size, left:left + size] for top in self.rows for left in self.columns]
        self.restored: list[torch.Tensor | None] = [None] * len(self.crops)

    def finish(self) -> torch.Tensor:
        """The restored image (3, *out_size)."""
        size, (height, width) = self.size, self.work_size
        if len(self.restored) == 1:
            image = self.restored[0]
        else:
            weight = ramp(size, self.overlap, self.restored[0].device)
            weight = weight[:, None] * weight[None, :]
            total = self.restored[0].new_zeros(3, height, width)
            weights = self.restored[0].new_zeros(1, height, width)
            tiles = iter(self.restored)
            for top in self.rows:
                for left in self.columns:
                    total[:, top:top + size, left:left + size] += next(tiles) * weight
                    weights[:, top:top + size, left:left + size] += weight
            image = total / weights
        return resize(image[None], self.out_size)[0]


class RestorePipeline:
    """A tokenizer and the restorer trained for its codes: degraded images in, restored images out.

    ``RestorePipeline.from_pretrained(tokenizer_dir, restorer_dir)(images, fidelity=0.5, upscale=None)``.

    Args:
        tokenizer: the :class:`vqstack.Tokenizer` whose codebook and decoder draw the restored image.
        restorer: a restorer (``vqstack.build("restorer", ...)``) built for this tokenizer's config.
        overlap: pixels shared by neighbouring tiles when restoring in tiles (default: ``image_size // 4``).
    """

    def __init__(self, tokenizer: Tokenizer, restorer, overlap: int | None = None):
        quantizer = tokenizer.quantizer
        ours = (restorer.codebook_size, restorer.dim, restorer.downsample)
        theirs = (quantizer.codebook_size, quantizer.dim, tokenizer.downsample)
        if ours != theirs:
            raise ValueError(f"The restorer predicts {ours[0]} codes of dim {ours[1]} on a grid downsampled by "
                             f"{ours[2]}, but the tokenizer has {theirs[0]} codes of dim {theirs[1]} and downsamples "
                             f"by {theirs[2]}: use the tokenizer the restorer was built for.")
        size = restorer.image_size
        overlap = size // 4 if overlap is None else overlap
        if isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 <= overlap < size:
            raise ValueError(f"overlap must be an int in 0..{size - 1} (pixels shared by neighbouring "
                             f"{size}x{size} tiles), got {overlap!r}.")
        self.tokenizer, self.restorer, self.overlap = tokenizer.eval(), restorer.eval(), overlap

    @classmethod
    def from_pretrained(cls, tokenizer_dir, restorer_dir, device="cpu", overlap: int | None = None
                        ) -> "RestorePipeline":
        """Load the tokenizer (``Tokenizer.save_pretrained``'s folder) and the restorer (``save_restorer``'s);
        a restorer trained for another tokenizer is refused, naming both folders."""
        config = read_config(tokenizer_dir)
        if "kind" in config:
            raise ValueError(f"--tokenizer {tokenizer_dir} holds a {config['kind']} ({config.get('name')!r}), not a "
                             f"tokenizer (were --tokenizer and --restorer swapped?).")
        restorer, _ = load_restorer(restorer_dir, tokenizer_dir, device=device)
        return cls(Tokenizer.from_pretrained(tokenizer_dir, device=device), restorer, overlap=overlap)

    @property
    def image_size(self) -> int:
        """The square side the restorer reads (the tokenizer's training resolution)."""
        return self.restorer.image_size

    @property
    def device(self) -> torch.device:
        return next(self.tokenizer.parameters()).device

    @torch.no_grad()
    def restore_batch(self, images: torch.Tensor, fidelity: float = DEFAULT_FIDELITY) -> torch.Tensor:
        """(B, 3, S, S) in [-1, 1], S = ``image_size``, on the pipeline's device -> restored images, same shape."""
        if self.tokenizer.training or self.restorer.training:  # no dropout, no codebook update
            self.tokenizer.eval(), self.restorer.eval()
        latents = blend_codes(self.tokenizer, self.restorer(images), fidelity)
        return self.tokenizer.decode_codes(latents).clamp(-1, 1)

    @torch.no_grad()
    def __call__(self, images, fidelity: float = DEFAULT_FIDELITY, upscale: int | None = None,
                 batch_size: int = 16):
        """Restore ``images``: a PIL image, a list of them, or a float tensor (B, 3, H, W) in [-1, 1].

        Returns the same kind: a PIL image, a list of RGB PIL images, or a float tensor on the input's device.

        Args:
            fidelity: in [0, 1], default 0.5 (CodeFormer's usual ``w``). 0 decodes the codes the restorer predicts
                (the cleanest, least faithful image), 1 the quantized codes of the input's own features (closest
                to the degraded input: with a restorer fresh from ``init_from_tokenizer`` it is exactly the
                tokenizer's reconstruction).
            upscale: None (default) keeps each image's size: an image of ``image_size`` square is restored as it
                is, any other is resized (bicubic, antialiased) to that square, restored and resized back. An int
                F >= 1 makes the output F times the input's size: the input is enlarged bicubically by F, then
                restored in ``image_size`` tiles overlapping by ``overlap`` pixels, blended with linear ramps (a
                side shorter than a tile is stretched to one tile and shrunk back).
            batch_size: crops (images or tiles) per restorer forward pass.

        Grayscale, RGBA (over white) and palette PIL images are converted to RGB first.
        """
        check_options(fidelity, upscale, batch_size)
        fidelity, upscale, batch_size = float(fidelity), None if upscale is None else int(upscale), int(batch_size)
        if isinstance(images, Image.Image):
            return self([images], fidelity, upscale, batch_size)[0]
        if isinstance(images, torch.Tensor):
            return self._call_tensor(images, fidelity, upscale, batch_size)
        if not isinstance(images, (list, tuple)) or not all(isinstance(i, Image.Image) for i in images):
            kinds = sorted({type(i).__name__ for i in images}) if isinstance(images, (list, tuple)) else None
            raise ValueError(f"images must be a PIL image, a list of PIL images or a float tensor (B, 3, H, W) in "
                             f"[-1, 1]; got {f'a list of {kinds}' if kinds else type(images).__name__}.")
        tensors = (from_pil(image, image.size[::-1])[0] for image in images)
        return [to_pil(out[None])[0] for out in self._restore(tensors, fidelity, upscale, batch_size)]

    def _call_tensor(self, images: torch.Tensor, fidelity, upscale, batch_size) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1] != 3 or not images.is_floating_point():
            raise ValueError(f"images must be a float tensor (B, 3, H, W) in [-1, 1] (or PIL images), got "
                             f"{images.dtype} {tuple(images.shape)}.")
        height, width = images.shape[-2:]
        if len(images) == 0 or height == 0 or width == 0:
            factor = upscale or 1
            return images.new_zeros(len(images), 3, height * factor, width * factor)
        restored = list(self._restore(iter(images.float()), fidelity, upscale, batch_size))
        return torch.stack(restored).to(images.device, images.dtype)

    def _restore(self, images, fidelity, upscale, batch_size):
        """Yield each image (3, H, W) restored, in order, while crops of several images share restorer batches."""
        waiting: list[_Plan] = []      # plans whose crops are not all restored, oldest first
        queue: list[tuple[_Plan, int]] = []

        def run():
            if queue:
                crops = torch.stack([plan.crops[k] for plan, k in queue])
                for (plan, k), out in zip(queue, self.restore_batch(crops, fidelity)):
                    plan.restored[k], plan.crops[k] = out, None
                queue.clear()

        def finished():
            while waiting and all(out is not None for out in waiting[0].restored):
                yield waiting.pop(0).finish()

        for image in images:
            if image.shape[-2] == 0 or image.shape[-1] == 0:
                raise ValueError(f"An image of {image.shape[-1]}x{image.shape[-2]} pixels has nothing to restore.")
            plan = _Plan(image.to(self.device, torch.float32), self.image_size, upscale, self.overlap)
            waiting.append(plan)
            for k in range(len(plan.crops)):
                queue.append((plan, k))
                if len(queue) == batch_size:
                    run()
                    yield from finished()
        run()
        yield from finished()


def restore_files(pipe: RestorePipeline, pairs: list[tuple[Path, Path]], fidelity: float = DEFAULT_FIDELITY,
                  upscale: int | None = None, batch_size: int = 16) -> int:
    """Restore each source file of ``pairs`` (from :func:`~vqstack.pipelines.files.image_pairs`) into its
    target, ``batch_size`` files at a time; returns how many were written (.jpg at quality 95, see ``save_image``)."""
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start:start + batch_size]
        restored = pipe([read_image(source) for source, _ in chunk], fidelity=fidelity, upscale=upscale,
                        batch_size=batch_size)
        for (_, target), image in zip(chunk, restored):
            save_image(image, target)
    return len(pairs)


def run_restore(tokenizer_dir, restorer_dir, image, out, fidelity: float = DEFAULT_FIDELITY,
                upscale: int | None = None, device="cpu", batch_size: int = 16) -> tuple[int, float]:
    """``vqstack restore``: check the arguments, load the pipeline, restore; (images written, seconds per image
    spent reading, restoring and writing; loading the models and imports excluded)."""
    check_options(fidelity, upscale, batch_size)
    pairs = image_pairs(image, out)
    pipe = RestorePipeline.from_pretrained(tokenizer_dir, restorer_dir, device=device)
    import torchvision.transforms.functional  # noqa: F401  its import (seconds) is loading, not restoring
    import torchvision.transforms.v2.functional  # noqa: F401

    start = time.perf_counter()
    count = restore_files(pipe, pairs, fidelity=fidelity, upscale=upscale, batch_size=batch_size)
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
    return count, (time.perf_counter() - start) / max(count, 1)
