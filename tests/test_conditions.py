"""Conditions (image -> condition image): every registered one, plugins included, keeps the contract; the built-ins
give known answers; a user's drawing becomes the line-art condition."""
import json
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

import vqstack
from vqstack.api import Condition, build_condition, check_component, check_same_condition
from vqstack.conditions import crop_back, drawing_to_condition

NAMES = vqstack.components("condition")
CHANNELS = {"lineart": 1, "grayscale": 1, "lowres": 3}


def images(b=2, h=16, w=24, seed=0):
    return torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_builtins_are_registered():
    assert {"lineart", "grayscale", "lowres"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_condition_conforms(name):
    check_component("condition", name)


@pytest.mark.parametrize("name", NAMES)
def test_shape_range_and_same_size(name):
    condition = vqstack.build("condition", name)
    assert isinstance(condition, Condition)
    x = images()
    out = condition(x, torch.Generator().manual_seed(0))
    assert out.shape == (2, condition.channels, 16, 24) and out.dtype == torch.float32
    assert out.min() >= -1 and out.max() <= 1
    assert condition(x[0]).shape == (condition.channels, 16, 24)  # one image in, one condition out
    if name in CHANNELS:
        assert condition.channels == CHANNELS[name]


@pytest.mark.parametrize("name", NAMES)
def test_sample_is_a_function_of_seed_epoch_index(name):
    condition = vqstack.build("condition", name)
    x = images(1)[0]
    first = condition.sample(x, index=7, epoch=2, seed=1)
    copy = pickle.loads(pickle.dumps(condition))  # what a DataLoader worker holds
    torch.manual_seed(123)  # the global RNG plays no part
    assert torch.equal(copy.sample(x, index=7, epoch=2, seed=1), first)


@pytest.mark.parametrize("name", NAMES)
def test_config_round_trip(name):
    condition = vqstack.build("condition", name)
    config = json.loads(json.dumps(condition.to_config()))  # as a prior's config.json keeps it
    twin = build_condition(config)
    x = images()
    assert torch.equal(twin(x, torch.Generator().manual_seed(3)), condition(x, torch.Generator().manual_seed(3)))
    check_same_condition(config, twin)


def test_random_lineart_differs_across_samples_and_not_when_fixed():
    x = images(1, 32, 32)[0]
    lineart = vqstack.build("condition", "lineart")
    styles = [lineart.sample(x, index=i) for i in range(4)]
    assert not all(torch.equal(styles[0], s) for s in styles[1:])
    assert not torch.equal(lineart.sample(x, index=0, epoch=0), lineart.sample(x, index=0, epoch=1))
    fixed = vqstack.build("condition", "lineart", random=False)
    assert torch.equal(fixed.sample(x, index=0), fixed.sample(x, index=5))


def test_lineart_styles_do_not_depend_on_batch_size():
    """Image i uses row i of one draw, so a batch gives image 0 the style a batch of one gives it."""
    lineart = vqstack.build("condition", "lineart")
    x = images(3)
    batch = lineart(x, torch.Generator().manual_seed(4))
    assert torch.equal(batch[:1], lineart(x[:1], torch.Generator().manual_seed(4)))


def test_grayscale_is_bt601_luma():
    colours = torch.tensor([[1, -1, -1], [-1, 1, -1], [-1, -1, 1], [1, 1, 1]], dtype=torch.float32)
    x = colours[:, :, None, None].expand(4, 3, 2, 2)
    luma = vqstack.build("condition", "grayscale")(x)[:, 0, 0, 0]
    expected = torch.tensor([0.299, 0.587, 0.114, 1.0]) * 2 - 1  # on the [0, 1] scale, then to [-1, 1]
    torch.testing.assert_close(luma, expected)


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_lowres_of_a_constant_is_the_constant(factor):
    x = torch.full((1, 3, 16, 16), 0.3)
    torch.testing.assert_close(vqstack.build("condition", "lowres", factor=factor)(x), x)


def test_lowres_loses_detail_and_refuses_other_factors():
    x = images(1, 16, 16)
    assert (vqstack.build("condition", "lowres", factor=4)(x) - x).abs().mean() > 0.1
    with pytest.raises(ValueError, match="one of 2, 4, 8, got 3"):
        vqstack.build("condition", "lowres", factor=3)


@pytest.mark.parametrize("detector", ["xdog", "sobel"])
def test_lineart_of_a_flat_image_is_paper(detector):
    lineart = vqstack.build("condition", "lineart", detectors=detector)  # random styles: none draws a line
    assert torch.equal(lineart(torch.full((3, 3, 16, 16), -0.4)), torch.ones(3, 1, 16, 16))


@pytest.mark.parametrize("detector", ["xdog", "sobel"])
def test_lineart_of_a_black_square_draws_its_border(detector):
    x = torch.ones(1, 3, 32, 32)
    x[..., 10:22, 10:22] = -1
    out = vqstack.build("condition", "lineart", detectors=detector, random=False)(x)[0, 0]
    near = torch.zeros(32, 32, dtype=torch.bool)
    near[8:24, 8:24] = True
    near[12:20, 12:20] = False  # a ring two pixels either side of the square's edge
    assert (out[near] < 0).float().mean() > 0.4  # ink along the edge
    far = torch.ones(32, 32, dtype=torch.bool)
    far[7:25, 7:25] = False
    far[13:19, 13:19] = True  # three pixels or more from the edge, inside the square too (no filled areas)
    assert (out[far] == 1).all()


def test_lineart_refuses_bad_arguments():
    with pytest.raises(ValueError, match="xdog, sobel"):
        vqstack.build("condition", "lineart", detectors=["canny"])
    with pytest.raises(ValueError, match="sigma"):
        vqstack.build("condition", "lineart", sigma=(2, 1))


def test_unknown_condition_lists_the_registered_ones():
    with pytest.raises(vqstack.UnknownComponentError, match="Registered conditions: grayscale, lineart, lowres.*"
                                                            "Did you mean 'lineart'"):
        vqstack.build("condition", "linart")


def test_check_same_condition_refuses_another():
    lineart = vqstack.build("condition", "lineart", random=False)
    check_same_condition({"name": "lineart", "kwargs": {"random": False}}, lineart)  # defaults filled in
    with pytest.raises(ValueError, match="trained for condition lineart .* got grayscale"):
        check_same_condition(lineart.to_config(), "grayscale")
    with pytest.raises(ValueError, match="got lowres"):
        check_same_condition("lowres", vqstack.build("condition", "lowres", factor=8))


def test_a_plugin_condition_is_registered_and_checked():
    class Invert(Condition):
        channels = 3

        def convert(self, images, generator):
            return -images

    class Plugin:
        @vqstack.hookimpl
        def vqstack_register_conditions(self, registry):
            registry.register("invert", Invert)

    vqstack.register_plugin(Plugin(), name="invert-plugin")
    try:
        assert "invert" in vqstack.components("condition")
        check_component("condition", "invert")
        assert vqstack.build("condition", "invert").to_config() == {"name": "invert", "kwargs": {}}
    finally:
        vqstack.unregister_plugin("invert-plugin")


# --- a user's drawing -> the line-art condition ---------------------------------------------------------------


def drawing(width=40, height=40, ink=0, paper=255, mode="L"):
    pixels = np.full((height, width), paper, dtype=np.uint8)
    pixels[height // 2 - 1:height // 2 + 1, 4:width - 4] = ink  # a horizontal stroke
    return Image.fromarray(pixels).convert(mode)


def test_drawing_becomes_lines_on_paper():
    condition, box = drawing_to_condition(drawing(), 20)
    assert condition.shape == (1, 20, 20) and box == (0, 0, 20, 20)
    assert condition[0, 0, 0] == 1 and condition.min() == -1  # paper white, the stroke full ink


def test_inverted_drawing_is_inverted():
    normal, _ = drawing_to_condition(drawing(), 20)
    inverted, _ = drawing_to_condition(drawing(ink=255, paper=0), 20)
    torch.testing.assert_close(inverted, normal)


@pytest.mark.parametrize("mode", ["RGB", "P", "L"])
def test_drawing_modes_agree(mode):
    torch.testing.assert_close(drawing_to_condition(drawing(mode=mode), 20)[0], drawing_to_condition(drawing(), 20)[0])


def test_rgba_drawing_is_composited_over_white():
    rgba = np.zeros((40, 40, 4), dtype=np.uint8)  # transparent black canvas: paper once over white
    rgba[19:21, 4:36] = (0, 0, 0, 255)
    condition, _ = drawing_to_condition(Image.fromarray(rgba, "RGBA"), 20)
    torch.testing.assert_close(condition, drawing_to_condition(drawing(), 20)[0])


def test_wide_drawing_is_padded_to_a_square_and_cropped_back():
    condition, box = drawing_to_condition(drawing(width=100, height=50), 64)
    assert condition.shape == (1, 64, 64) and box == (0, 16, 64, 48)
    assert (condition[:, :16] == 1).all() and (condition[:, 48:] == 1).all()  # the padding is paper
    assert (condition[:, 16:48] < 0).any()
    back = crop_back(Image.new("RGB", (64, 64)), box, (100, 50))
    assert back.size == (100, 50)


def test_thin_lines_survive_shrinking():
    condition, _ = drawing_to_condition(drawing(width=400, height=400), 16)  # a 2-pixel stroke, 25x smaller
    assert condition.min() == -1


def test_blank_drawing_is_refused():
    with pytest.raises(ValueError, match="blank"):
        drawing_to_condition(Image.new("RGB", (30, 30), "white"), 16)
    with pytest.raises(ValueError, match="blank"):
        drawing_to_condition(Image.new("RGBA", (30, 30), (0, 0, 0, 0)), 16)  # nothing drawn on a transparent canvas
