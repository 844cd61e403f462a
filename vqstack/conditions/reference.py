"""A reference picture beside the condition: the colours and style to paint with (style2paints' reference).

A prior built with ``reference=True`` reads ``REFERENCE_CHANNELS`` more condition channels: the reference resized
to the condition's size (3 channels, [-1, 1]) and a presence channel (1 where a reference is given, -1 where not,
its RGB then 0). :func:`with_reference` stacks them behind the condition image, so a prior still reads one image.

Training takes the reference the way style2paints does: the same face after a geometric change
(:func:`reference_view`: flip, zoom and crop, rotation, a small warp). The reference then holds the right colours
but never the right layout, so the prior learns to take colours from it, not lines; at use time a picture of
another face works the same way. A share of the samples gets no reference (``reference_dropout`` of the data
set), so the prior also paints without one.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

REFERENCE_CHANNELS = 4  # RGB of the reference + its presence


def _uniform(generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def reference_view(image: torch.Tensor, generator: torch.Generator | None = None, rotation: float = 20.0,
                   zoom: tuple[float, float] = (0.8, 1.15), shift: float = 0.1, warp: float = 0.04) -> torch.Tensor:
    """``image`` (3, H, W) in [-1, 1] after a random geometric change drawn from ``generator``: a flip (half the
    time), a rotation of up to ``rotation`` degrees, a zoom in ``zoom`` (above 1 crops), a shift of up to ``shift``
    of the size, and a smooth warp moving pixels by up to ``warp`` of the size. Borders are reflected, so no blank
    edge tells the prior where the change happened."""
    if image.dim() != 3 or image.shape[0] != 3 or not image.is_floating_point():
        raise ValueError(f"reference_view takes one float image (3, H, W), got {tuple(image.shape)}.")
    angle = math.radians(_uniform(generator, -rotation, rotation))
    scale = 1.0 / _uniform(generator, *zoom)
    flip = -1.0 if float(torch.rand((), generator=generator)) < 0.5 else 1.0
    tx, ty = _uniform(generator, -shift, shift) * 2, _uniform(generator, -shift, shift) * 2
    cos, sin = math.cos(angle) * scale, math.sin(angle) * scale
    theta = torch.tensor([[cos * flip, -sin, tx], [sin * flip, cos, ty]], dtype=torch.float32)[None]
    height, width = image.shape[-2:]
    grid = F.affine_grid(theta, (1, 3, height, width), align_corners=False)
    # the warp: a random 4x4 displacement field, smoothly upsampled (grid units: 2 = the whole image)
    field = (torch.rand(1, 2, 4, 4, generator=generator) * 2 - 1) * warp * 2
    field = F.interpolate(field, size=(height, width), mode="bicubic", align_corners=True)
    grid = grid + field.permute(0, 2, 3, 1)
    out = F.grid_sample(image.float()[None], grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return out[0].clamp(-1, 1).to(image.dtype)


def with_reference(condition: torch.Tensor, reference: torch.Tensor | None = None,
                   present: torch.Tensor | None = None) -> torch.Tensor:
    """Condition images (B, C, H, W) -> (B, C + REFERENCE_CHANNELS, H, W): the reference (1 or B, 3, h, w) in
    [-1, 1], resized to (H, W) if it is another size, and its presence channel. ``reference=None`` gives "no
    reference" for every row; ``present`` (B,) bool marks the rows that have one (the others are blanked)."""
    batch, _, height, width = condition.shape
    if reference is None:
        blank = condition.new_zeros(batch, REFERENCE_CHANNELS, height, width)
        blank[:, 3] = -1
        return torch.cat([condition, blank], 1)
    if reference.dim() == 3:
        reference = reference[None]
    if reference.dim() != 4 or reference.shape[1] != 3 or reference.shape[0] not in (1, batch):
        raise ValueError(f"reference must be RGB images (1 or {batch}, 3, H, W) in [-1, 1], got "
                         f"{tuple(reference.shape)}.")
    reference = reference.to(condition.device, condition.dtype)
    if reference.shape[-2:] != (height, width):  # a reference of another size is resized, not refused
        reference = F.interpolate(reference.float(), size=(height, width), mode="bicubic", antialias=True,
                                  align_corners=False).clamp(-1, 1).to(condition.dtype)
    reference = reference.expand(batch, -1, -1, -1)
    mask = torch.ones(batch, 1, height, width, dtype=condition.dtype, device=condition.device)
    if present is not None:
        keep = present.to(condition.device).view(batch, 1, 1, 1)
        reference, mask = reference * keep, torch.where(keep, mask, -mask)
    return torch.cat([condition, reference, mask], 1)
