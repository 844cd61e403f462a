"""Outpainting on tiny random models: window planning, the grown size at the input's scale, the input's pixels kept
inside its old border, and the errors for sides, steps and candidates a prior cannot honour."""
import numpy as np
import pytest
import torch
from PIL import Image

import vqstack
from helpers.recipes import tiny_tokenizer_config
from vqstack.cli import main as cli_main
from test_inpaint import assert_ramp, ramp_decoder, random_image
from vqstack import Pipeline
from vqstack.pipelines.outpainting import border_pixels, parse_extend, window_starts, windows

CELL = 4  # the tiny tokenizer: 16x16 images, 4x4 tokens


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    root = tmp_path_factory.mktemp("outpaint")
    torch.manual_seed(0)
    vqstack.Tokenizer.from_config(tiny_tokenizer_config()).save_pretrained(root / "tokenizer")
    prior = vqstack.build("prior", "ar", vocab_size=32, seq_len=16, num_classes=3, dim=32, depth=1, heads=2)
    vqstack.save_component(prior, root / "prior")
    return root / "tokenizer", root / "prior"


@pytest.fixture
def image():
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8))


def test_extend_strings_name_the_valid_sides():
    assert parse_extend("left=8, right=2") == {"top": 0, "bottom": 0, "left": 8, "right": 2}
    for text, message in [("middle=3", "unknown side 'middle'.*top, bottom, left, right"),
                          ("left=-1", "not a whole number"), ("left=two", "not a whole number"),
                          ("", "grows no side"), ("left=0", "grows no side")]:
        with pytest.raises(ValueError, match=message):
            parse_extend(text)


@pytest.mark.parametrize("before,size,total", [(0, 4, 4), (8, 4, 20), (3, 4, 7), (0, 4, 13), (5, 4, 9)])
def test_windows_cover_the_axis_half_a_window_apart_from_the_image_out(before, size, total):
    starts = window_starts(before, size, total)
    assert starts[0] == before, "the image's own window first"
    covered = set().union(*(range(s, s + size) for s in starts))
    assert covered == set(range(total)) and all(0 <= s <= total - size for s in starts)
    distances = [abs(s - before) for s in starts]
    assert distances == sorted(distances), "nearest the image first"
    assert all(abs(b - a) <= size // 2 for a, b in zip(sorted(starts), sorted(starts)[1:]))


def test_each_window_after_the_first_overlaps_known_tokens():
    corners = windows((4, 4), {"top": 2, "bottom": 0, "left": 4, "right": 4})
    assert corners[0] == (2, 4)
    known = np.zeros((6, 12), dtype=bool)
    known[2:6, 4:8] = True
    for y, x in corners[1:]:
        assert known[y:y + 4, x:x + 4].any(), f"window {(y, x)} would be drawn without context"
        known[y:y + 4, x:x + 4] = True
    assert known.all()


def test_border_pixels_are_tokens_times_the_input_cell_rounded_half_up():
    extend = {"top": 1, "bottom": 3, "left": 2, "right": 1}
    # a 6x10 (height x width) input on a 4x4 grid: cells of 1.5 rows and 2.5 columns
    assert border_pixels(extend, (6, 10), (4, 4)) == {"top": 2, "bottom": 5, "left": 5, "right": 3}
    # the example: a 96-pixel input, an 8x8 grid of a 32-pixel model: 12-pixel cells, left=8 adds 96
    assert border_pixels({"top": 0, "bottom": 0, "left": 8, "right": 1}, (96, 96), (8, 8))["left"] == 96


def test_outpainting_grows_the_image_and_keeps_the_original_inside(stages, image):
    pipe = Pipeline.from_pretrained(*stages)
    calls = []
    generate = pipe.prior.generate

    def spy(n, **kwargs):
        calls.append(kwargs["known"].clone())
        return generate(n, **kwargs)

    pipe.prior.generate = spy
    grown = pipe.outpaint(image, {"left": 2, "right": 4}, labels=1, seed=0)
    assert grown.size == (16 + 6 * CELL, 16)
    assert calls and all((c >= 0).any() and (c < 0).any() for c in calls), "every draw has known and new tokens"
    inner = np.asarray(grown)[:, 2 * CELL + CELL:2 * CELL + 16 - CELL]  # one cell inside the old border: no feather
    assert np.array_equal(inner, np.asarray(image)[:, CELL:16 - CELL])
    again = pipe.outpaint(image, {"left": 2, "right": 4}, labels=1, seed=0)
    assert np.array_equal(np.asarray(again), np.asarray(grown)), "the same seed gives the same image"


@pytest.mark.parametrize("width, height, extend, border, reach", [
    (96, 96, {"left": 2, "right": 1}, {"left": 48, "right": 24}, 8),   # 24-pixel cells
    (48, 64, {"top": 1, "left": 1}, {"top": 16, "left": 12}, 8),       # 12 wide, 16 high
    (64, 48, {"bottom": 2, "right": 1}, {"bottom": 24, "right": 16}, 8),
    (5, 3, {"left": 2, "top": 1, "bottom": 2}, {"left": 3, "top": 1, "bottom": 2}, 2),  # 2.5 -> 3, 0.75 -> 1
    (16, 16, {"top": 1, "right": 3}, {"top": 4, "right": 12}, 4),     # the model's own size
])
def test_outpaint_grows_the_input_at_its_own_scale(stages, monkeypatch, width, height, extend, border, reach):
    pipe = Pipeline.from_pretrained(*stages)
    shapes = ramp_decoder(pipe, monkeypatch)
    image = random_image(width, height)
    grown = pipe.outpaint(image, extend, seed=0)
    border = {side: border.get(side, 0) for side in ("top", "bottom", "left", "right")}
    size = (width + border["left"] + border["right"], height + border["top"] + border["bottom"])
    assert grown.size == size
    tokens = {side: extend.get(side, 0) for side in border}
    assert shapes == [(1, 4 + tokens["top"] + tokens["bottom"], 4 + tokens["left"] + tokens["right"])], \
        "the grown token grid decoded once, at the model's scale"
    out = np.asarray(grown).astype(int)
    top, left = border["top"], border["left"]
    inner = out[top + reach:top + height - reach, left + reach:left + width - reach]
    assert np.array_equal(inner, np.asarray(image)[reach:height - reach, reach:width - reach]), \
        "bit-identical beyond the feather"
    new = np.ones(out.shape[:2], dtype=bool)
    new[top:top + height, left:left + width] = False
    assert_ramp(out, new, 16)  # the decoded canvas stretched over the whole grown picture


def test_steps_and_candidates_a_prior_cannot_honour_are_one_line_errors(stages, image):
    pipe = Pipeline.from_pretrained(*stages)
    with pytest.raises(ValueError, match="steps=8 sets the decoding passes of a parallel-decoding prior .maskgit."):
        pipe(1, steps=8)
    with pytest.raises(ValueError, match="drop steps"):
        pipe.outpaint(image, {"top": 1}, steps=8)
    with pytest.raises(ValueError, match="extend must give tokens >= 0 per side"):
        pipe.outpaint(image, {"up": 1})


def test_cli_outpaint_writes_the_grown_image_and_names_bad_sides(stages, image, tmp_path, capsys):
    tokenizer, prior = stages
    image.save(tmp_path / "in.png")
    common = ["--tokenizer", str(tokenizer), "--prior", str(prior), "--image", str(tmp_path / "in.png"),
              "--device", "cpu"]
    assert cli_main(["outpaint", *common, "--extend", "top=1,bottom=1", "--out", str(tmp_path / "out.png")]) == 0
    assert Image.open(tmp_path / "out.png").size == (16, 16 + 2 * CELL)
    random_image(64, 48).save(tmp_path / "wide.png")  # 16x12-pixel cells at the input's scale
    common[common.index("--image") + 1] = str(tmp_path / "wide.png")
    assert cli_main(["outpaint", *common, "--extend", "left=1,bottom=2", "--out", str(tmp_path / "out.png")]) == 0
    with Image.open(tmp_path / "out.png") as out:
        assert out.size == (64 + 16, 48 + 24)
        assert np.array_equal(np.asarray(out)[:48 - 8, 16 + 8:], np.asarray(Image.open(tmp_path / "wide.png"))[:40, 8:])
    assert cli_main(["outpaint", *common, "--extend", "up=1", "--out", str(tmp_path / "bad.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown side 'up'" in err[0]
