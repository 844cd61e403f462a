"""Inpainting on tiny random models: the input's size and pixels kept outside the mask, best-of-N fills, input
errors, and the warning for a prior trained on another tokenizer."""
import json
import shutil
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import vqstack
from helpers.recipes import tiny_tokenizer_config
from vqstack.cli import main as cli_main
from vqstack.core.serialization import weights_sha256
from vqstack import Pipeline
from vqstack.pipelines.images import from_pil, to_pil
from vqstack.pipelines.inpainting import feather, feather_reach

CELL = 4  # the tokenizer downsamples 16x16 images to a 4x4 token grid


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    """A random tiny tokenizer and class-conditional prior, saved; the prior's head is random so fills differ in
    likelihood (a fresh head predicts uniformly)."""
    root = tmp_path_factory.mktemp("inpaint")
    torch.manual_seed(0)
    vqstack.Tokenizer.from_config(tiny_tokenizer_config()).save_pretrained(root / "tokenizer")
    prior = vqstack.build("prior", "ar", vocab_size=32, seq_len=16, num_classes=3, dim=32, depth=1, heads=2)
    torch.nn.init.normal_(prior.head.weight, std=0.2)
    vqstack.save_component(prior, root / "prior")
    return root / "tokenizer", root / "prior"


@pytest.fixture
def pipe(stages):
    return Pipeline.from_pretrained(*stages)


@pytest.fixture
def image():
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8))


def mask_of(*cells, size=16):
    """A mask image, white over each (row, column) token cell."""
    mask = np.zeros((size, size), dtype=np.uint8)
    for row, column in cells:
        mask[row * CELL:(row + 1) * CELL, column * CELL:(column + 1) * CELL] = 255
    return Image.fromarray(mask)


def cell_pixels(*cells):
    """Boolean (16, 16) array of the pixels in the given token cells."""
    inside = np.zeros((16, 16), dtype=bool)
    for row, column in cells:
        inside[row * CELL:(row + 1) * CELL, column * CELL:(column + 1) * CELL] = True
    return inside


def spy_generate(pipe, monkeypatch, replace=None):
    """Record each prior.generate call's n, known and output; ``replace(n, known)`` stands in for sampling."""
    calls, generate = [], pipe.prior.generate

    def spy(n, **kwargs):
        out = replace(n, kwargs["known"]) if replace else generate(n, **kwargs)
        calls.append({"n": n, "known": kwargs["known"].clone(), "out": out.clone()})
        return out

    monkeypatch.setattr(pipe.prior, "generate", spy)
    return calls


def decoded(pipe, tokens):
    """uint8 (16, 16, 3) array of one token sequence decoded, as inpaint decodes it."""
    with torch.inference_mode():
        return np.asarray(to_pil(pipe.decode(tokens.view(1, -1)))[0])


def test_feather_ramps_linearly_over_its_reach():
    region = torch.zeros(1, 1, 16, 16, dtype=torch.bool)
    region[0, 0, 4:8, 4:8] = True
    row = feather(region, 4)[0, 0, 5]
    expected = torch.tensor([.2, .4, .6, .8, 1, 1, 1, 1, .8, .6, .4, .2, 0, 0, 0, 0])
    torch.testing.assert_close(row, expected)


@pytest.mark.parametrize("size, grid, reach", [
    ((16, 16), (4, 4), 4),    # the model's own size: one 4-pixel cell
    ((96, 96), (4, 4), 8),    # 24-pixel cells: capped at 8
    ((96, 96), (8, 8), 8),    # the README's face: 12-pixel cells
    ((64, 48), (4, 4), 8),
    ((3, 5), (4, 4), 2),      # cells of 0.75 x 1.25 pixels: the larger, rounded up
    ((2, 2), (4, 4), 1),      # at least one pixel
])
def test_feather_reach_is_one_cell_at_the_input_scale_at_most_8_pixels(size, grid, reach):
    assert feather_reach(size, grid) == reach


def chebyshev_distance(region: np.ndarray) -> np.ndarray:
    """Pixels to the nearest True pixel of ``region`` (Chebyshev, as the feather counts), by brute force."""
    ys, xs = np.nonzero(region)
    grid_y, grid_x = np.indices(region.shape)
    return np.maximum(abs(grid_y[..., None] - ys), abs(grid_x[..., None] - xs)).min(-1)


def test_inpaint_keeps_the_original_outside_the_mask(pipe, image, monkeypatch):
    calls = spy_generate(pipe, monkeypatch)
    mask = np.zeros((16, 16), dtype=np.uint8)
    mask[5, 6] = 255  # one pixel of token cell (1, 1): the whole token is re-sampled, only the pixel repainted
    repaired = np.asarray(pipe.inpaint(image, Image.fromarray(mask), labels=1, seed=0))
    pixels = np.asarray(image)
    far = chebyshev_distance(mask > 0) > CELL  # beyond the feather's reach, one 4-pixel cell
    assert np.array_equal(repaired[far], pixels[far])
    generated = decoded(pipe, calls[0]["out"])
    assert not np.array_equal(generated[far], pixels[far])  # a full re-decode would fail the check above
    assert np.array_equal(repaired[5, 6], generated[5, 6])
    # the prior was asked to keep every token outside the masked cell
    original = pipe.tokenizer.encode(from_pil(image, (16, 16))).view(4, 4)
    known = calls[0]["known"].view(4, 4)
    assert known[1, 1] == -1 and (known >= 0).sum() == 15
    assert torch.equal(known.flatten()[known.flatten() >= 0], original.flatten()[known.flatten() >= 0])


def known_loglik(prior, fills, positions, labels):
    """The test's own scoring: sum of log p(fill[i]) over ``positions`` under the prior."""
    with torch.inference_mode():
        logits = prior.eval()(fills, labels=labels).logits.float()
    return logits.log_softmax(-1).gather(-1, fills[..., None])[..., 0][:, positions].sum(1)


def random_fills(known, count, seed=0):
    """``count`` rows of ``known`` with random tokens where it is -1."""
    noise = torch.randint(0, 32, (count, known.shape[1]), generator=torch.Generator().manual_seed(seed))
    return torch.where(known >= 0, known, noise)


def test_inpaint_keeps_the_candidate_the_prior_finds_likeliest(pipe, image, monkeypatch):
    """Masked tokens 5 and 6; the known tokens 7..15 come after them in raster order and decide the score."""
    def best_in_the_middle(n, known):
        fills = random_fills(known, n)
        order = known_loglik(pipe.prior, fills, list(range(7, 16)), labels=2).argsort(descending=True)
        return fills[order[[1, 0, 2]]]  # neither first nor last, so "first", "last" or "lowest" would all fail

    calls = spy_generate(pipe, monkeypatch, replace=best_in_the_middle)
    repaired = np.asarray(pipe.inpaint(image, mask_of((1, 1), (1, 2)), labels=2, seed=0, candidates=3))
    assert [call["n"] for call in calls] == [3]  # the candidates are sampled in one batch
    fills = calls[0]["out"]
    scores = known_loglik(pipe.prior, fills, list(range(7, 16)), labels=2)
    assert scores[1] > scores[0] + 1e-3 and scores[1] > scores[2] + 1e-3
    inside = cell_pixels((1, 1), (1, 2))
    assert np.array_equal(repaired[inside], decoded(pipe, fills[1])[inside])
    assert all(not np.array_equal(repaired[inside], decoded(pipe, fills[i])[inside]) for i in (0, 2))


def test_inpaint_keeps_the_first_candidate_on_a_tie(pipe, image, monkeypatch):
    """The last token masked: no known token follows it, every candidate scores the same."""
    calls = spy_generate(pipe, monkeypatch, replace=lambda n, known: random_fills(known, n, seed=1))
    repaired = np.asarray(pipe.inpaint(image, mask_of((3, 3)), seed=0, candidates=3))
    fills = calls[0]["out"]
    assert len(set(fills[:, 15].tolist())) == 3
    inside = cell_pixels((3, 3))
    assert np.array_equal(repaired[inside], decoded(pipe, fills[0])[inside])


def test_inpaint_with_candidates_is_reproducible_with_a_seed(pipe, image):
    mask = mask_of((1, 1), (2, 2))
    a, b, c = (np.asarray(pipe.inpaint(image, mask, labels=0, seed=seed, candidates=3)) for seed in (5, 5, 6))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def inpaint_cli(stages, folder, image, mask, *extra):
    image.save(folder / "in.png")
    mask.save(folder / "mask.png")
    return cli_main(["inpaint", "--tokenizer", str(stages[0]), "--prior", str(stages[1]), "--image",
                     str(folder / "in.png"), "--mask", str(folder / "mask.png"), "--out", str(folder / "out.png"),
                     "--device", "cpu", *extra])


def ramp_decoder(pipe, monkeypatch):
    """Replace the tokenizer's decoder by a known picture: red rising left to right, green top to bottom, blue a
    constant 153, over whatever token grid it gets; returns the grid shapes it was called with."""
    shapes = []

    def decode(tokens):
        shapes.append(tuple(tokens.shape))
        h, w = tokens.shape[-2] * CELL, tokens.shape[-1] * CELL
        x, y = ((torch.arange(n) + 0.5) / n * 2 - 1 for n in (w, h))
        picture = torch.stack([x.expand(h, w), y[:, None].expand(h, w), torch.full((h, w), 0.2)])
        return picture.expand(len(tokens), -1, -1, -1)

    monkeypatch.setattr(pipe.tokenizer, "decode", decode)
    return shapes


def assert_ramp(pixels: np.ndarray, where: np.ndarray, model_side: int):
    """``pixels`` (H, W, 3) show ramp_decoder's picture stretched over their whole size, wherever ``where`` holds:
    blue exactly, red and green within half a model pixel (bicubic overshoots at the edges)."""
    height, width = where.shape
    ys, xs = np.nonzero(where)
    assert (pixels[ys, xs, 2] == 153).all()
    tolerance = 255 / model_side / 2 + 1
    assert np.abs(pixels[ys, xs, 0] - (xs + 0.5) / width * 255).max() <= tolerance
    assert np.abs(pixels[ys, xs, 1] - (ys + 0.5) / height * 255).max() <= tolerance


def random_image(width, height, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.mark.parametrize("width, height, reach", [(96, 96, 8), (48, 64, 8), (64, 48, 8), (5, 3, 2), (16, 16, 4)])
def test_inpaint_returns_the_input_size_with_its_own_pixels_kept(pipe, monkeypatch, width, height, reach):
    """The fill is decoded at the model's 16x16 and stretched over the input; outside the feather the input stays."""
    image = random_image(width, height)
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[:height // 2, :width // 2] = 255  # token cells (0, 0), (0, 1), (1, 0), (1, 1) at every size here
    calls = spy_generate(pipe, monkeypatch)
    shapes = ramp_decoder(pipe, monkeypatch)
    repaired = pipe.inpaint(image, Image.fromarray(mask), seed=0)
    assert repaired.size == (width, height)
    assert shapes == [(1, 4, 4)], "decoded once, at the model's own grid"
    assert (calls[0]["known"].view(4, 4)[:2, :2] == -1).all() and (calls[0]["known"] >= 0).sum() == 12
    out, pixels = np.asarray(repaired).astype(int), np.asarray(image).astype(int)
    distance = chebyshev_distance(mask > 0)
    assert np.array_equal(out[distance > reach], pixels[distance > reach]), "bit-identical beyond the feather"
    assert_ramp(out, mask > 0, 16)
    alpha = np.clip((reach + 1 - distance) / (reach + 1), 0, 1)  # the feather, in input pixels
    blue = pixels[..., 2] + alpha * (153 - pixels[..., 2])
    assert np.abs(out[..., 2] - blue).max() <= 1


def test_cli_inpaint_keeps_a_larger_image_at_its_size(stages, tmp_path):
    """The README's case: the top third of a 96x96 face repaired, the rest of it untouched at full resolution."""
    image = random_image(96, 96)
    mask = Image.new("L", (96, 96))
    mask.paste(255, (0, 0, 96, 32))
    assert inpaint_cli(stages, tmp_path, image, mask, "--labels", "1") == 0
    with Image.open(tmp_path / "out.png") as out:
        assert out.size == (96, 96)
        repaired = np.asarray(out)
    assert np.array_equal(repaired[40:], np.asarray(image)[40:]), "more than 8 pixels below the mask: the input's"
    assert not np.array_equal(repaired[:32], np.asarray(image)[:32])


def test_cli_inpaint_keeps_a_non_square_image_at_its_shape(stages, tmp_path):
    image = random_image(48, 64)
    mask = Image.new("L", (48, 64))
    mask.paste(255, (30, 40, 48, 64))  # the bottom-right corner
    assert inpaint_cli(stages, tmp_path, image, mask) == 0
    with Image.open(tmp_path / "out.png") as out:
        assert out.size == (48, 64)
        repaired = np.asarray(out)
    assert np.array_equal(repaired[:32], np.asarray(image)[:32]) and np.array_equal(repaired[:, :22],
                                                                                     np.asarray(image)[:, :22])


def test_cli_inpaint_writes_the_repaired_image(stages, image, tmp_path):
    assert inpaint_cli(stages, tmp_path, image, mask_of((0, 1)), "--candidates", "2", "--labels", "1") == 0
    with Image.open(tmp_path / "out.png") as out:
        assert out.size == (16, 16)
        assert np.array_equal(np.asarray(out)[8:], np.asarray(image)[8:])  # rows far below the masked cell


@pytest.mark.parametrize("mask, extra, words", [
    (Image.new("L", (8, 12), 255), [], ["8x12", "16x16"]),
    (Image.new("L", (16, 16), 0), [], ["no white pixel", "white marks the region to repair"]),
    (Image.new("L", (16, 16), 255), ["--candidates", "0"], ["candidates must be an int >= 1, got 0"]),
])
def test_cli_inpaint_refuses_bad_input_in_one_line(stages, image, tmp_path, capsys, mask, extra, words):
    assert inpaint_cli(stages, tmp_path, image, mask, *extra) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vqstack inpaint: error: ")
    assert all(word in lines[0] for word in words)
    assert not (tmp_path / "out.png").exists()


def prior_with_info(stages, folder, info):
    """A copy of the prior with ``info`` as its tokens_info.json (None: no file)."""
    prior_dir = shutil.copytree(stages[1], folder / "prior")
    if info is not None:
        (prior_dir / "tokens_info.json").write_text(json.dumps(info))
    return prior_dir


def test_from_pretrained_warns_when_the_prior_saw_another_tokenizer(stages, tmp_path):
    prior_dir = prior_with_info(stages, tmp_path,
                                {"tokenizer_path": "runs/old-tokenizer", "tokenizer_sha256": "ab" * 32})
    with pytest.warns(UserWarning, match="trained on the tokens of runs/old-tokenizer") as caught:
        Pipeline.from_pretrained(stages[0], prior_dir)
    message = str(caught[0].message)
    assert str(stages[0]) in message and str(prior_dir) in message
    assert "abababababab" in message and weights_sha256(stages[0])[:12] in message


@pytest.mark.parametrize("info", [None, {"tokenizer_path": "elsewhere"}, "matching"])
def test_from_pretrained_is_quiet_when_the_tokenizer_matches_or_is_not_recorded(stages, tmp_path, info):
    if info == "matching":
        info = {"tokenizer_path": "elsewhere", "tokenizer_sha256": weights_sha256(stages[0])}
    prior_dir = prior_with_info(stages, tmp_path, info)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Pipeline.from_pretrained(stages[0], prior_dir)
    assert not [w for w in caught if "trained on the tokens" in str(w.message)]


@pytest.mark.parametrize("repair", ["inpaint", "outpaint"])
def test_a_prior_without_known_tokens_is_refused_in_one_line(pipe, image, monkeypatch, repair):
    """known= is optional in the prior contract; inpainting and outpainting need it, and say so (not a TypeError)."""
    def generate(n, labels=None, cfg_scale=1.0, temperature=1.0, top_k=None, top_p=None, generator=None):
        raise AssertionError("never reached")

    monkeypatch.setattr(pipe.prior, "generate", generate)
    with pytest.raises(ValueError, match=r"known= keeps an image's tokens .* does not take it"):
        if repair == "inpaint":
            pipe.inpaint(image, mask_of((0, 0)))
        else:
            pipe.outpaint(image, {"left": 1})
