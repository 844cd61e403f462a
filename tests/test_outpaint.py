"""Outpainting on tiny random models: window planning, the grown size, the original kept inside its old border,
and the errors for sides, steps and candidates a prior cannot honour."""
import numpy as np
import pytest
import torch
from PIL import Image

import vqstack
from helpers.recipes import tiny_tokenizer_config
from vqstack.cli import main as cli_main
from vqstack.pipeline import Pipeline, from_pil, to_pil
from vqstack.repair import parse_extend, window_starts, windows

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
    original = np.asarray(to_pil(from_pil(image, (16, 16)))[0])
    inner = np.asarray(grown)[:, 2 * CELL + CELL:2 * CELL + 16 - CELL]  # one cell inside the old border: no feather
    assert np.array_equal(inner, original[:, CELL:16 - CELL])
    again = pipe.outpaint(image, {"left": 2, "right": 4}, labels=1, seed=0)
    assert np.array_equal(np.asarray(again), np.asarray(grown)), "the same seed gives the same image"


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
    assert cli_main(["outpaint", *common, "--extend", "up=1", "--out", str(tmp_path / "bad.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown side 'up'" in err[0]
