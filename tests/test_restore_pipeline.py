"""RestorePipeline on a tiny untrained restorer: what comes out for each kind and size of input, the fidelity ends,
tiling, and the mistakes it refuses.

A restorer fresh from ``init_from_tokenizer`` reads the image with the tokenizer's own encoder, so at fidelity 1
it gives exactly the tokenizer's reconstruction: that is what several tests compare against."""
import numpy as np
import pytest
import torch
from PIL import Image

import vqstack
from vqstack import RestorePipeline
from vqstack.pipelines.images import from_pil, resize, to_pil
from vqstack.pipelines.restoration import DEFAULT_FIDELITY, ramp, tile_starts
from vqstack.restorers.saving import save_restorer
from vqstack.conformance import build_example

SIZE = 16  # the example restorer's image side (its tokenizer downsamples by 2: an 8x8 code grid)


def make_stages(root, seed: int = 0):
    """A tiny tokenizer and a restorer initialised from it, saved into ``root``; their folders."""
    torch.manual_seed(seed)
    restorer = build_example("restorer", "codeformer")
    tokenizer = vqstack.Tokenizer.from_config(restorer.tokenizer_config)
    restorer.init_from_tokenizer(tokenizer)
    tokenizer.save_pretrained(root / "tokenizer")
    save_restorer(restorer, root / "restorer", root / "tokenizer")
    return root / "tokenizer", root / "restorer"


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    return make_stages(tmp_path_factory.mktemp("restore"))


@pytest.fixture
def pipe(stages):
    return RestorePipeline.from_pretrained(*stages)


def random_images(*shape, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def random_pil(height: int, width: int, seed: int = 0, mode: str = "RGB") -> Image.Image:
    channels = {"RGB": (3,), "L": (), "RGBA": (4,)}[mode]
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, *channels), dtype=np.uint8)
    return Image.fromarray(pixels, mode)


def reconstruct(tokenizer, images: torch.Tensor) -> torch.Tensor:
    return tokenizer.decode(tokenizer.encode(images))


def identity(crops, fidelity):
    """A stand-in restorer that gives every crop back unchanged: what remains is the pipeline's geometry."""
    return crops.clone()


# --- kinds of input ---------------------------------------------------------------------------------------------


def test_pil_in_gives_pil_out_of_the_same_size(pipe):
    out = pipe(random_pil(SIZE, SIZE))
    assert isinstance(out, Image.Image) and out.mode == "RGB" and out.size == (SIZE, SIZE)
    many = pipe([random_pil(SIZE, SIZE, 1), random_pil(20, 30, 2)])
    assert isinstance(many, list) and [image.size for image in many] == [(SIZE, SIZE), (30, 20)]
    assert pipe([]) == []


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_tensor_in_gives_tensor_out_of_the_input_dtype(pipe, dtype):
    images = random_images(3, 3, SIZE, SIZE).to(dtype)
    out = pipe(images)
    assert isinstance(out, torch.Tensor) and out.shape == images.shape and out.dtype == dtype
    assert out.min() >= -1 and out.max() <= 1 and not out.requires_grad
    assert pipe(images[:0], upscale=2).shape == (0, 3, 2 * SIZE, 2 * SIZE)


def test_fidelity_one_is_the_tokenizers_own_reconstruction(pipe):
    images = random_images(2, 3, SIZE, SIZE)
    torch.testing.assert_close(pipe(images, fidelity=1), reconstruct(pipe.tokenizer, images), atol=1e-5, rtol=0)
    image = random_pil(SIZE, SIZE, 3)
    expected = np.asarray(to_pil(reconstruct(pipe.tokenizer, from_pil(image, (SIZE, SIZE))))[0], dtype=int)
    assert np.abs(np.asarray(pipe(image, fidelity=1), dtype=int) - expected).max() <= 1  # rounding to 8 bits


def test_fidelity_ends_differ_and_the_default_lies_between(pipe):
    images = random_images(2, 3, SIZE, SIZE, seed=1)
    clean, own = pipe(images, fidelity=0), pipe(images, fidelity=1)
    assert (clean - own).abs().mean() > 1e-3
    assert DEFAULT_FIDELITY == 0.5
    torch.testing.assert_close(pipe(images), pipe(images, fidelity=0.5))
    assert (pipe(images) - clean).abs().mean() > 1e-4 and (pipe(images) - own).abs().mean() > 1e-4


@pytest.mark.parametrize("fidelity", [-0.1, 1.5, float("nan"), True, "0.5", None])
def test_fidelity_out_of_range_is_refused(pipe, fidelity):
    with pytest.raises(ValueError, match=r"fidelity must be in \[0, 1\]"):
        pipe(random_images(1, 3, SIZE, SIZE), fidelity=fidelity)


def test_grayscale_rgba_and_palette_images_come_out_rgb(pipe):
    gray = random_pil(12, 20, 1, "L")
    rgba = random_pil(SIZE, SIZE, 2, "RGBA")
    palette = random_pil(SIZE, 24, 3).convert("P")
    outs = pipe([gray, rgba, palette])
    assert [(image.mode, image.size) for image in outs] == [("RGB", (20, 12)), ("RGB", (SIZE, SIZE)),
                                                            ("RGB", (24, SIZE))]
    alone = pipe(gray.convert("RGB"))  # grey converts to equal channels; the restorer sees the same image
    assert np.array_equal(np.asarray(outs[0]), np.asarray(alone))


@pytest.mark.parametrize("images", [torch.zeros(3, SIZE, SIZE), torch.zeros(1, 4, SIZE, SIZE),
                                    torch.zeros(1, 3, SIZE, SIZE, dtype=torch.uint8), torch.zeros(1, SIZE, SIZE)])
def test_bad_tensors_are_refused_naming_the_expected_shape(pipe, images):
    with pytest.raises(ValueError, match=r"float tensor \(B, 3, H, W\) in \[-1, 1\]"):
        pipe(images)


def test_other_inputs_are_refused(pipe):
    with pytest.raises(ValueError, match="a PIL image, a list of PIL images or a float tensor"):
        pipe(np.zeros((SIZE, SIZE, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"a list of \['str'\]"):
        pipe(["face.png"])


@pytest.mark.parametrize("upscale", [0, -2, 2.0, 1.5, True, "4"])
def test_bad_upscale_is_refused_naming_valid_values(pipe, upscale):
    with pytest.raises(ValueError, match=r"upscale must be an int >= 1 \(e\.g\. 2 or 4.*or None"):
        pipe(random_images(1, 3, SIZE, SIZE), upscale=upscale)


@pytest.mark.parametrize("batch_size", [0, 2.5, None])
def test_bad_batch_size_is_refused(pipe, batch_size):
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        pipe(random_images(1, 3, SIZE, SIZE), batch_size=batch_size)


def test_batching_does_not_change_the_images(pipe):
    images = [random_pil(SIZE, SIZE, 1), random_pil(12, 20, 2), random_pil(SIZE, SIZE, 3), random_pil(9, 9, 4)]
    for upscale in (None, 2):
        together = pipe(images, upscale=upscale, batch_size=16)
        alone = [pipe(image, upscale=upscale, batch_size=1) for image in images]
        assert [a.size for a in together] == [b.size for b in alone]
        for a, b in zip(together, alone):
            assert np.abs(np.asarray(a, dtype=int) - np.asarray(b, dtype=int)).max() <= 1


def test_training_mode_is_ignored(pipe):
    images = random_images(2, 3, SIZE, SIZE, seed=5)
    expected = pipe(images)
    pipe.restorer.train(), pipe.tokenizer.train()
    torch.testing.assert_close(pipe(images), expected)
    assert not pipe.restorer.training and not pipe.tokenizer.training


# --- sizes: resizing and tiles ------------------------------------------------------------------------------------


def test_another_size_is_resized_to_the_restorer_and_back(pipe):
    images = random_images(2, 3, 20, 36, seed=2)
    out = pipe(images, fidelity=1)
    assert out.shape == images.shape
    expected = resize(reconstruct(pipe.tokenizer, resize(images, (SIZE, SIZE))), (20, 36))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_upscale_makes_the_output_that_many_times_larger(pipe):
    assert pipe(random_pil(10, 12), upscale=4).size == (48, 40)
    assert pipe(random_pil(4, 4), upscale=4).size == (SIZE, SIZE)  # exactly one tile: restored directly
    assert pipe(random_images(1, 3, 16, 40), upscale=2).shape == (1, 3, 32, 80)
    assert pipe(random_images(1, 3, 16, 40), upscale=1).shape == (1, 3, 16, 40)


@pytest.mark.parametrize("shape, upscale", [((16, 40), 2), ((40, 40), 1), ((33, 17), 3), ((16, 16), 2)])
def test_tiles_cover_the_image_and_their_weights_sum_to_one(pipe, monkeypatch, shape, upscale):
    """With a restorer that changes nothing, tiling must give back the enlarged input: every pixel covered, the
    blending weights normalised, each tile put back where it came from."""
    monkeypatch.setattr(pipe, "restore_batch", identity)
    images = random_images(2, 3, *shape, seed=3)
    big = resize(images, (shape[0] * upscale, shape[1] * upscale))
    torch.testing.assert_close(pipe(images, upscale=upscale), big, atol=1e-5, rtol=0)


def test_a_side_shorter_than_a_tile_is_stretched_to_one_and_shrunk_back(pipe, monkeypatch):
    monkeypatch.setattr(pipe, "restore_batch", identity)
    images = random_images(1, 3, 5, 40, seed=4)
    expected = resize(resize(images, (SIZE, 40)), (5, 40))
    torch.testing.assert_close(pipe(images, upscale=1), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("fidelity", [1.0, 0.5])
def test_tile_interiors_are_the_tiles_restored_alone_and_overlaps_blend_them(pipe, fidelity):
    """16x40 at upscale 2 -> 32x80 in 16x16 tiles overlapping by 4 (rows start 0, 12, 16; columns 0, 12, ...,
    64): where one tile alone covers a pixel the output is that tile's restoration; where two overlap it lies
    between them."""
    images = random_images(1, 3, 16, 40, seed=6)
    out = pipe(images, fidelity=fidelity, upscale=2)[0]
    big = resize(images, (32, 80))
    assert pipe.overlap == SIZE // 4 and tile_starts(80, SIZE, pipe.overlap) == [0, 12, 24, 36, 48, 60, 64]
    first, second = (pipe.restore_batch(big[..., :SIZE, left:left + SIZE], fidelity)[0] for left in (0, 12))
    torch.testing.assert_close(out[:, :12, :12], first[:, :12, :12], atol=1e-5, rtol=0)
    # columns 12..15 hold tiles 0 and 1 (rows 0..11 no other): a cross-fade from the first to the second
    low, high = torch.minimum(first[:, :12, 12:], second[:, :12, :4]), torch.maximum(first[:, :12, 12:],
                                                                                       second[:, :12, :4])
    blended = out[:, :12, 12:16]
    assert (blended >= low - 1e-5).all() and (blended <= high + 1e-5).all()
    weight = torch.tensor([4, 3, 2, 1]) / 5  # the first tile's ramp falling over the overlap
    torch.testing.assert_close(blended, weight * first[:, :12, 12:] + (1 - weight) * second[:, :12, :4],
                               atol=1e-5, rtol=0)


def test_tile_starts_and_ramp():
    assert tile_starts(16, 16, 4) == [0]
    assert tile_starts(28, 16, 4) == [0, 12]
    assert tile_starts(30, 16, 4) == [0, 12, 14]
    assert tile_starts(512 * 4, 512, 128) == [0, 384, 768, 1152, 1536]
    assert ramp(8, 2).tolist() == pytest.approx([1 / 3, 2 / 3, 1, 1, 1, 1, 2 / 3, 1 / 3])
    assert ramp(4, 0).tolist() == [1, 1, 1, 1]


def test_overlap_is_checked(stages):
    with pytest.raises(ValueError, match=r"overlap must be an int in 0\.\.15"):
        RestorePipeline.from_pretrained(*stages, overlap=SIZE)
    assert RestorePipeline.from_pretrained(*stages, overlap=0).overlap == 0


# --- folders and exports ------------------------------------------------------------------------------------------


def test_a_restorer_for_another_tokenizer_is_refused_naming_both(stages, tmp_path):
    other_tokenizer, _ = make_stages(tmp_path / "other", seed=1)
    with pytest.raises(ValueError) as err:
        RestorePipeline.from_pretrained(other_tokenizer, stages[1])
    message = str(err.value)
    assert str(stages[1]) in message and str(other_tokenizer) in message and str(stages[0].resolve()) in message


def test_swapped_folders_are_refused(stages):
    with pytest.raises(ValueError, match="were --tokenizer and --restorer swapped"):
        RestorePipeline.from_pretrained(stages[1], stages[0])
    with pytest.raises(ValueError, match="holds a tokenizer, not a restorer"):
        RestorePipeline.from_pretrained(stages[0], stages[0])


def test_a_restorer_of_other_sizes_is_refused(stages):
    config = build_example("restorer", "codeformer").tokenizer_config
    config = {**config, "quantizer": {"name": "vq", "kwargs": {"dim": 4, "codebook_size": 32}}}
    restorer = vqstack.build("restorer", "codeformer", tokenizer=config, image_size=SIZE, width=32, depth=1, heads=2)
    with pytest.raises(ValueError, match="predicts 32 codes of dim 4 .* the tokenizer has 16 codes"):
        RestorePipeline(vqstack.Tokenizer.from_pretrained(stages[0]), restorer)


def test_top_level_exports():
    from vqstack import api, restorers

    assert vqstack.RestorePipeline is RestorePipeline
    assert vqstack.Restorer is restorers.Restorer is api.Restorer
    assert vqstack.RestorerOutput is restorers.RestorerOutput is api.RestorerOutput
    assert {"RestorePipeline", "Restorer", "RestorerOutput"} <= set(vqstack.__all__)


def test_blend_codes_takes_bf16_features_from_autocast():
    from vqstack.api import RestorerOutput, blend_codes

    restorer = build_example("restorer", "codeformer")
    tokenizer = vqstack.Tokenizer.from_config(restorer.tokenizer_config).eval()
    restorer.init_from_tokenizer(tokenizer)
    with torch.no_grad():
        out = restorer.eval()(torch.rand(2, 3, 16, 16) * 2 - 1)
        half = RestorerOutput(logits=out.logits.bfloat16(), features=out.features.bfloat16())
        blended = blend_codes(tokenizer, half, 0.5)
    assert blended.dtype == torch.float32 and torch.isfinite(blended).all()
