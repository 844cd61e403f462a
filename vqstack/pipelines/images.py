"""Images between PIL and tensors, as the pipelines read and write them: [-1, 1] tensors for the models, 8-bit
PIL images for people, resizing, grids and blending a generated picture over a kept one."""
from __future__ import annotations

import math

import torch
from PIL import Image

from ..data.images import to_rgb


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """Images (B, 3, H, W) in [-1, 1] -> PIL RGB images."""
    pixels = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu()
    return [Image.fromarray(array.numpy()) for array in pixels]


def from_pil(image: Image.Image, size: tuple[int, int]) -> torch.Tensor:
    """A PIL image -> (1, 3, h, w) in [-1, 1], resized to ``size`` (height, width)."""
    from torchvision.transforms.functional import pil_to_tensor

    return (pil_to_tensor(to_rgb(image).resize(size[::-1], Image.BICUBIC)).float() / 127.5 - 1)[None]


def make_grid_image(images: list[Image.Image], columns: int | None = None, padding: int = 2,
                    zoom: int = 1) -> Image.Image:
    """Paste equally sized images into one grid image, each enlarged ``zoom`` times (nearest: pixels stay sharp)."""
    if zoom != 1:
        images = [image.resize((image.width * zoom, image.height * zoom), Image.NEAREST) for image in images]
    columns = columns or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    w, h = images[0].size
    grid = Image.new("RGB", (columns * (w + padding) + padding, rows * (h + padding) + padding), "white")
    for i, image in enumerate(images):
        grid.paste(image, (padding + (i % columns) * (w + padding), padding + (i // columns) * (h + padding)))
    return grid


def input_pixels(image: Image.Image) -> torch.Tensor:
    """(1, 3, H, W) float 0..255 of ``image`` at its own size: whole numbers, so kept pixels survive exactly."""
    from torchvision.transforms.functional import pil_to_tensor

    return pil_to_tensor(to_rgb(image))[None].float()


def resize(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, 3, H, W) in [-1, 1] -> (B, 3, *size): bicubic, antialiased when shrinking, overshoot clamped; an image
    already of that size is returned as it is."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2.functional import resize as tv_resize

    if tuple(images.shape[-2:]) == tuple(size):
        return images
    return tv_resize(images, list(size), interpolation=InterpolationMode.BICUBIC, antialias=True).clamp(-1, 1)

def composite(pixels: torch.Tensor, generated: torch.Tensor, alpha: torch.Tensor) -> Image.Image:
    """Blend ``generated`` ([-1, 1], the size of ``pixels``) over the input ``pixels`` (0..255) by ``alpha``. lerp
    returns its start exactly at weight 0 and its end at 1, so kept pixels are bit-identical to the input's."""
    drawn = (generated.float().clamp(-1, 1) + 1) * 127.5
    blended = torch.lerp(pixels, drawn, alpha.to(pixels)).round().clamp(0, 255).to(torch.uint8)
    return Image.fromarray(blended[0].permute(1, 2, 0).cpu().numpy())
