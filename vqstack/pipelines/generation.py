"""Two stages in one object: a prior samples token grids, the tokenizer decodes them into images; inpainting and
outpainting re-sample part of an image's tokens (vqstack/pipelines/inpainting.py, outpainting.py)."""
from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import torch
from PIL import Image

from ..core.serialization import load_component, read_config, weights_sha256
from ..priors.sampling import generate_options
from ..tokenizer import Tokenizer
from .images import composite, from_pil, input_pixels, resize, to_pil
from .inpainting import (check_inpaint_inputs, feather, feather_reach, known_token_loglik, mask_region,
                         region_cells)


def recorded_tokenizer(prior_dir) -> dict:
    """What the prior's ``tokens_info.json`` records of the tokenizer it was trained on ({} when nothing)."""
    from ..data.tokens import INFO_NAME

    path = Path(prior_dir) / INFO_NAME
    if not path.is_file():  # a prior saved by hand: nothing to compare
        return {}
    try:
        info = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); fix or delete it.") from err
    return info if isinstance(info, dict) else {}


def other_tokenizer(tokenizer_dir, prior_dir) -> str | None:
    """Why the prior does not fit ``tokenizer_dir`` when its ``tokens_info.json`` records another tokenizer's
    weights (both named, with their sha256), else None."""
    info = recorded_tokenizer(prior_dir)
    recorded = info.get("tokenizer_sha256")
    if not recorded:
        return None
    actual = weights_sha256(tokenizer_dir)
    if actual == recorded:
        return None
    trained_on = info.get("tokenizer_path") or "another tokenizer"
    return (f"The prior in {prior_dir} was trained on the tokens of {trained_on} (sha256 {recorded[:12]}), not of "
            f"the tokenizer in {tokenizer_dir} (sha256 {actual[:12]})")


def warn_if_other_tokenizer(tokenizer_dir, prior_dir) -> None:
    """A UserWarning when the prior was trained on another tokenizer's tokens: its samples would decode to noise."""
    problem = other_tokenizer(tokenizer_dir, prior_dir)
    if problem:
        warnings.warn(f"{problem}, so its images will likely be noise.", UserWarning, stacklevel=3)


def check_tokenizer_dir(tokenizer_dir) -> None:
    """Refuse a component folder (a prior, say) given as the tokenizer: the usual sign of swapped arguments."""
    config = read_config(tokenizer_dir)
    if "kind" in config:
        raise ValueError(f"{tokenizer_dir} holds a {config['kind']} ({config.get('name')!r}), not a tokenizer: give "
                         f"the folder written by Tokenizer.save_pretrained() first, then the prior's (swapped?).")


def recorded_grid(info: dict, prior, prior_dir) -> tuple[int, int] | None:
    """The (h, w) token grid ``tokens_info.json`` records the prior was trained on (None when it records none),
    checked against the prior's ``seq_len``."""
    grid = info.get("grid")
    if not (isinstance(grid, list) and len(grid) == 2 and all(isinstance(g, int) and g > 0 for g in grid)):
        return None
    if grid[0] * grid[1] != prior.seq_len:
        raise ValueError(f"{Path(prior_dir) / 'tokens_info.json'} records a {grid[0]}x{grid[1]} token grid but the "
                         f"prior in {prior_dir} models seq_len={prior.seq_len}: the folder mixes two runs; export "
                         f"the prior again.")
    return tuple(grid)


def check_recorded_downsample(info: dict, grid, tokenizer, tokenizer_dir, prior_dir) -> None:
    """Refuse a tokenizer that downsamples by another factor than the one whose tokens the prior learnt: the
    grid would decode, but into images of another size and meaning."""
    resolution = info.get("resolution")
    if grid is None or isinstance(resolution, bool) or not isinstance(resolution, int):
        return
    trained = {resolution // side for side in grid if resolution % side == 0}
    if len(trained) == 1 and tokenizer.downsample not in trained:
        raise ValueError(f"The prior in {prior_dir} was trained on {grid[0]}x{grid[1]} token grids of "
                         f"{resolution}x{resolution} images (downsampling by {trained.pop()}), but the tokenizer in "
                         f"{tokenizer_dir} downsamples by {tokenizer.downsample}: use the tokenizer the prior was "
                         f"trained with ({info.get('tokenizer_path', 'see tokens_info.json')}).")


def capitalised(text: str) -> str:
    """``text`` starting a sentence (str.capitalize would lower-case the folder names in it)."""
    return text[:1].upper() + text[1:]


def check_stages(tokenizer, prior, grid=None, tokenizer_name: str = "the tokenizer", prior_name: str = "the prior",
                 trained_with: str | None = None) -> tuple[int, int]:
    """The (h, w) grid the prior's tokens decode on, after refusing a pair that cannot work together: a
    multi-codebook tokenizer, another codebook size, or a sequence length that is no grid."""
    from ..data.tokens import check_single_codebook  # late: the data module loads the datasets library

    check_single_codebook(tokenizer, tokenizer_name)
    codes = tokenizer.quantizer.codebook_size
    if prior.vocab_size != codes:
        hint = f" ({trained_with})" if trained_with else ""
        raise ValueError(f"{capitalised(prior_name)} models {prior.vocab_size} token values but "
                         f"{tokenizer_name} has {codes} codes: use the tokenizer the prior was trained with{hint}.")
    if grid is None:
        side = math.isqrt(prior.seq_len)
        if side * side != prior.seq_len:
            raise ValueError(f"{capitalised(prior_name)} models {prior.seq_len} tokens per image, "
                             f"not a square grid, and records no grid: pass grid=(h, w) to Pipeline.")
        grid = (side, side)
    if len(grid) != 2 or grid[0] * grid[1] != prior.seq_len:
        raise ValueError(f"grid {tuple(grid)} holds {math.prod(grid)} tokens, {prior_name} makes {prior.seq_len}.")
    return tuple(grid)


class Pipeline:
    """``Pipeline.from_pretrained(tokenizer_dir, prior_dir)(n, labels=..., cfg_scale=..., seed=...)`` -> images."""

    def __init__(self, tokenizer: Tokenizer, prior, grid: tuple[int, int] | None = None):
        self.grid = check_stages(tokenizer, prior, grid)
        self.tokenizer, self.prior = tokenizer.eval(), prior.eval()

    @classmethod
    def from_pretrained(cls, tokenizer_dir, prior_dir, device="cpu") -> "Pipeline":
        """Load both stages. Refuses a prior whose tokens this tokenizer cannot decode (another codebook size, grid
        or downsampling, or several codebooks); warns when ``prior_dir/tokens_info.json`` records a tokenizer of the
        same shapes but other weights (a retrained one)."""
        check_tokenizer_dir(tokenizer_dir)
        tokenizer = Tokenizer.from_pretrained(tokenizer_dir, device=device)
        prior = load_component(prior_dir, device, kind="prior")
        info = recorded_tokenizer(prior_dir)
        grid = recorded_grid(info, prior, prior_dir)
        check_recorded_downsample(info, grid, tokenizer, tokenizer_dir, prior_dir)
        check_stages(tokenizer, prior, grid, f"the tokenizer in {tokenizer_dir}", f"the prior in {prior_dir}",
                     trained_with=info.get("tokenizer_path"))
        warn_if_other_tokenizer(tokenizer_dir, prior_dir)
        return cls(tokenizer, prior, grid)

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
                 batch_size: int = 64, steps: int | None = None) -> list[Image.Image]:
        """Sample ``n`` images; ``labels`` as the prior accepts them (one for all, or one per image); ``steps``:
        decoding passes of a parallel-decoding prior (maskgit)."""
        generator, options = self.generator(seed), self.decoding_options(steps)
        per_image = labels if isinstance(labels, (list, tuple, torch.Tensor)) else None
        images = []
        for start in range(0, n, batch_size):
            count = min(batch_size, n - start)
            batch_labels = per_image[start:start + count] if per_image is not None else labels
            tokens = self.prior.generate(count, labels=batch_labels, cfg_scale=cfg_scale, temperature=temperature,
                                         top_k=top_k, top_p=top_p, generator=generator, **options)
            images += to_pil(self.decode(tokens))
        return images

    @torch.inference_mode()
    def inpaint(self, image: Image.Image, mask: Image.Image, labels=None, cfg_scale: float = 1.0,
                seed: int | None = None, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, candidates: int = 1, steps: int | None = None) -> Image.Image:
        """Re-sample the tokens under the white part of ``mask`` (every other token kept) and return ``image``, at
        its own size, with the white pixels replaced by the fill and a feather around them.

        The image maps onto the pipeline's image size for the tokens; a token is re-sampled when any mask pixel of
        its cell is white. The fill is decoded at the pipeline's size, resized to the image's, and blended in over
        the white pixels and up to one token cell (at the image's scale, at most 8 pixels) around them; every
        other pixel is the input's own. ``candidates`` > 1 samples that many fills in one batch and keeps the one
        under which the prior finds the known tokens after the hole likeliest."""
        check_inpaint_inputs(image, mask, candidates)
        options = self.decoding_options(steps, known=True)
        if candidates > 1 and not getattr(self.prior, "causal", False):
            raise ValueError(f"candidates={candidates} ranks fills by how an autoregressive prior (ar) scores the "
                             f"tokens after the hole; this prior ({type(self.prior).__name__}) already sees every "
                             f"side of the hole: use candidates=1.")
        hole = mask_region(mask).to(self.device)
        pixels = input_pixels(image).to(self.device)
        tokens = self.tokenizer.encode(from_pil(image, self.image_size).to(self.device)).flatten(1)
        cells = region_cells(hole, self.grid).flatten(1)
        known = torch.where(cells, torch.full_like(tokens, -1), tokens)
        fills = self.prior.generate(candidates, labels=labels, cfg_scale=cfg_scale, temperature=temperature,
                                    top_k=top_k, top_p=top_p, generator=self.generator(seed), known=known,
                                    **options)
        generated = self.decode(self.best_fill(fills, known, labels))  # at the pipeline's size
        size = tuple(pixels.shape[-2:])
        return composite(pixels, resize(generated, size), feather(hole, feather_reach(size, self.grid)))

    @torch.inference_mode()
    def outpaint(self, image: Image.Image, extend: dict[str, int], labels=None, cfg_scale: float = 1.0,
                 seed: int | None = None, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, steps: int | None = None) -> Image.Image:
        """Grow ``image`` by ``extend`` tokens per side (``{"left": 8, "right": 8}``) and return it at its own size
        plus the new border: a token adds one cell at the image's scale on its axis (image side / grid side,
        rounded per side to the nearest pixel, halves up; vqstack/pipelines/outpainting.py ``border_pixels``).

        The image maps onto the pipeline's image size for the tokens, the prior fills the new tokens window by
        window (vqstack/pipelines/outpainting.py), the grown grid is decoded in one piece and resized onto the
        grown picture, and the input's own pixels fill the old border, blended with the fill only within one token
        cell (at most 8 pixels) of its edge."""
        from .outpainting import SIDES, border_pixels, fill_canvas

        unknown_sides = set(extend) - set(SIDES)
        extend = {side: int(extend.get(side, 0)) for side in SIDES}
        if unknown_sides or min(extend.values()) < 0 or not any(extend.values()):
            raise ValueError(f"extend must give tokens >= 0 per side ({', '.join(SIDES)}), at least one > 0; "
                             f"got {extend}.")
        pixels = input_pixels(image).to(self.device)
        (h, w), size = self.grid, tuple(pixels.shape[-2:])
        canvas = torch.full((h + extend["top"] + extend["bottom"], w + extend["left"] + extend["right"]), -1,
                            dtype=torch.long, device=self.device)
        canvas[extend["top"]:extend["top"] + h, extend["left"]:extend["left"] + w] = self.tokenizer.encode(
            from_pil(image, self.image_size).to(self.device))[0]
        generator, options = self.generator(seed), self.decoding_options(steps, known=True)

        def draw(known: torch.Tensor) -> torch.Tensor:
            return self.prior.generate(1, labels=labels, cfg_scale=cfg_scale, temperature=temperature, top_k=top_k,
                                       top_p=top_p, generator=generator, known=known, **options)

        generated = self.tokenizer.decode(fill_canvas(canvas, self.grid, extend, draw)[None])  # model scale
        border = border_pixels(extend, size, self.grid)
        grown = (size[0] + border["top"] + border["bottom"], size[1] + border["left"] + border["right"])
        inside = (..., slice(border["top"], border["top"] + size[0]), slice(border["left"], border["left"] + size[1]))
        kept = torch.zeros(1, 3, *grown, device=self.device)
        kept[inside] = pixels
        new = torch.ones(1, 1, *grown, dtype=torch.bool, device=self.device)
        new[inside] = False
        return composite(kept, resize(generated, grown), feather(new, feather_reach(size, self.grid)))

    def decoding_options(self, steps: int | None, known: bool = False) -> dict:
        """``steps`` for a prior that decodes in parallel passes (maskgit). A prior whose ``generate`` lacks
        ``steps=`` (when given) or ``known=`` (``known=True``: inpainting, outpainting) is refused in one line."""
        options = generate_options(self.prior, steps=steps, known=True if known else None)
        options.pop("known", None)  # the caller passes its own known tokens
        return options

    def best_fill(self, fills: torch.Tensor, known: torch.Tensor, labels=None) -> torch.Tensor:
        """The (1, seq_len) fill whose following known tokens the prior finds likeliest; the first on ties."""
        if len(fills) == 1:  # nothing to choose: skip the scoring forward
            return fills
        best = int(known_token_loglik(self.prior, fills, known, labels).argmax())
        return fills[best:best + 1]
