"""A first look at the moving parts: an untrained tokenizer built by registry names on a few images."""
from __future__ import annotations

import inspect
from pathlib import Path

import torch

from .core.plugins import registry
from .tokenizer import Tokenizer

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}


def load_images(folder: Path, count: int, resolution: int) -> torch.Tensor | None:
    """Up to ``count`` images from ``folder`` as a float batch in [-1, 1], or None when there are none."""
    from PIL import Image
    from torchvision.transforms.functional import center_crop, pil_to_tensor, resize

    files = sorted(p for p in folder.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[:count] if folder.is_dir() else []
    if not files:
        return None
    batch = []
    for path in files:
        with Image.open(path) as image:
            tensor = pil_to_tensor(image.convert("RGB"))
        batch.append(center_crop(resize(tensor, resolution, antialias=True), resolution))
    return torch.stack(batch).float() / 127.5 - 1


def run_demo(data: Path, quantizer: str = "vq", resolution: int = 64, batch: int = 8) -> int:
    torch.manual_seed(0)
    images = load_images(data, batch, resolution)
    source = f"{len(images)} images from {data}" if images is not None else f"{batch} random images ({data} not found)"
    if images is None:
        images = torch.rand(batch, 3, resolution, resolution) * 2 - 1

    size = {"ch": 32, "ch_mult": [1, 2, 2], "num_res_blocks": 1, "attn_resolutions": [], "resolution": resolution}
    quantizer_kwargs = {"dim": 16}
    if "codebook_size" in inspect.signature(registry("quantizer").get(quantizer)).parameters:
        quantizer_kwargs["codebook_size"] = 256
    tokenizer = Tokenizer.from_config({
        "encoder": {"name": "conv", "kwargs": {**size, "out_channels": 64}},
        "quantizer": {"name": quantizer, "kwargs": quantizer_kwargs},
        "decoder": {"name": "conv", "kwargs": {**size, "in_channels": 64}},
    })
    params = sum(p.numel() for p in tokenizer.parameters())
    print(f"vqstack demo: {source}")
    print(f"tokenizer conv/{quantizer}/conv, {params / 1e6:.2f} M parameters, downsampling x{tokenizer.downsample}, "
          f"{tokenizer.quantizer.codebook_size} codes")

    tokens = tokenizer.encode(images)
    recon = tokenizer.decode(tokens)
    stats = tokenizer(images).metrics
    print(f"images {tuple(images.shape)} -> tokens {tuple(tokens.shape)} {tokens.dtype} -> images {tuple(recon.shape)}")
    print("token grid of the first image:")
    grid = tokens[0] if tokens.dim() == 3 else tokens[0, ..., 0]
    for row in grid.tolist():
        print("   " + " ".join(f"{t:4d}" for t in row))
    mse = torch.mean((recon - images) ** 2).item()
    print(f"codebook usage {stats['usage']:.3f}, perplexity {stats['perplexity']:.1f}, "
          f"reconstruction MSE {mse:.3f} (untrained: train with recipes/ to make it small)")
    return 0
