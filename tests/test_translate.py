"""TranslatePipeline (issue 21 steps 5-6): a drawing or photo painted by a translator at its own size, faces
re-styled without a mask, and the one-line refusals. Tiny random models: the code paths, never the pictures."""
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import vqstack
from helpers.recipes import tiny_tokenizer_config
from vqstack.core.serialization import weights_sha256
from vqstack.pipelines import EditResult, TranslatePipeline
from vqstack.pipelines.translation import neighbourhood_scores
from vqstack.training.priors import export_prior

ATTRIBUTES = {"hair": ["blonde", "blue", "green", "red"], "eyes": ["blue", "red"]}
LINEART = {"name": "lineart", "kwargs": {}}
GRAY = {"name": "grayscale", "kwargs": {}}


def save_prior(root, name, tokenizer_dir, seed=1, prior="ar", **kwargs):
    """A tiny prior (random head, so the inputs show in the logits) exported as the recipes do, next to
    tokens_info.json naming ``tokenizer_dir``; returns its folder."""
    torch.manual_seed(seed)
    size = {"dim": 32, "depth": 1, "heads": 2} if prior == "ar" else {"dim": 32, "depth": 1, "heads": 2, "steps": 3}
    model = vqstack.build("prior", prior, vocab_size=32, seq_len=16, attributes=ATTRIBUTES, patch_size=4,
                          grid=[4, 4], **size, **kwargs)
    torch.nn.init.normal_(model.head.weight, std=1.0)
    info = {"grid": [4, 4], "codebook_size": 32, "tokenizer_path": str(tokenizer_dir),
            "tokenizer_sha256": weights_sha256(tokenizer_dir), "resolution": 16}
    export_prior(model, info, root / name)
    return root / name / "prior"


def make_stages(root):
    """Two tiny tokenizers (16 px -> 4x4 tokens, 32 codes) and the priors the tests load."""
    torch.manual_seed(0)
    vqstack.Tokenizer.from_config(tiny_tokenizer_config()).save_pretrained(root / "tokenizer")
    torch.manual_seed(5)
    vqstack.Tokenizer.from_config(tiny_tokenizer_config()).save_pretrained(root / "other-tokenizer")
    tokenizer = root / "tokenizer"
    return SimpleNamespace(
        root=root, tokenizer=tokenizer, other_tokenizer=root / "other-tokenizer",
        lineart=save_prior(root, "lineart", tokenizer, image_condition=LINEART, reference=True),
        plain_lineart=save_prior(root, "plain-lineart", tokenizer, image_condition=LINEART),
        gray=save_prior(root, "gray", tokenizer, image_condition=GRAY),
        labels_only=save_prior(root, "labels-only", tokenizer),
    )


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    return make_stages(tmp_path_factory.mktemp("translate"))


@pytest.fixture(scope="module")
def pipe(stages):
    return TranslatePipeline.from_pretrained(stages.tokenizer, stages.lineart)


def sketch(width=90, height=60, ink="black", paper="white", mode="RGB"):
    """A face-like sketch on a non-square canvas: a circle, two eyes and a mouth."""
    image = Image.new(mode, (width, height), paper)
    draw = ImageDraw.Draw(image)
    cx, cy, r = width // 2, height // 2, min(width, height) // 2 - 4
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=ink, width=2)
    draw.ellipse((cx - r // 2 - 2, cy - r // 3 - 2, cx - r // 2 + 2, cy - r // 3 + 2), fill=ink)
    draw.ellipse((cx + r // 2 - 2, cy - r // 3 - 2, cx + r // 2 + 2, cy - r // 3 + 2), fill=ink)
    draw.line((cx - r // 3, cy + r // 2, cx + r // 3, cy + r // 2), fill=ink, width=2)
    return image


def photo(width, height, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def same(a, b) -> bool:
    return np.array_equal(np.asarray(a), np.asarray(b))


def one_line(err) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


# --- translate ------------------------------------------------------------------------------------------------------


def test_a_sketch_gives_n_images_of_its_size_reproducibly(pipe):
    drawing = sketch()
    a = pipe(drawing, labels="green hair,blue eyes", n=3, seed=0)
    b = pipe(drawing, labels="green hair,blue eyes", n=3, seed=0)
    c = pipe(drawing, labels="green hair,blue eyes", n=3, seed=1)
    assert len(a) == 3 and all(im.size == (90, 60) and im.mode == "RGB" for im in a)
    assert all(same(x, y) for x, y in zip(a, b))
    assert not all(same(x, y) for x, y in zip(a, c))
    assert not same(a[0], a[1])  # n samples, not one repeated


def test_rgba_and_inverted_drawings_read_as_the_same_line_art(pipe, tmp_path):
    plain, _ = pipe.condition_image(sketch())
    transparent = sketch(mode="RGBA", paper=(0, 0, 0, 0))  # a drawing app's empty canvas is paper
    inverted = sketch(ink="white", paper="black")          # chalk on a blackboard
    sketch(mode="L", ink=0, paper=255).save(tmp_path / "sketch.png")
    for other in (transparent, inverted, tmp_path / "sketch.png", str(tmp_path / "sketch.png")):
        condition, _ = pipe.condition_image(other)
        assert torch.equal(condition, plain)
    assert plain.shape == (1, 1, 16, 16) and plain.min() == -1 and plain.max() == 1
    assert [im.size for im in pipe(transparent, n=2, seed=0)] == [(90, 60)] * 2


def test_a_tall_drawing_keeps_its_frame(pipe):
    images = pipe(sketch(40, 100), n=1, seed=0, cfg_scale=1.0)
    assert images[0].size == (40, 100)


def test_a_reference_of_another_size_steers_the_colours(pipe, tmp_path):
    drawing = sketch()
    without = pipe(drawing, n=2, seed=0)
    reference = photo(30, 50, seed=3)
    reference.save(tmp_path / "ref.png")
    given = pipe(drawing, reference=reference, n=2, seed=0)
    from_file = pipe(drawing, reference=tmp_path / "ref.png", n=2, seed=0)
    assert [im.size for im in given] == [(90, 60)] * 2
    assert all(same(x, y) for x, y in zip(given, from_file))
    assert not all(same(x, y) for x, y in zip(given, without))


def test_a_photo_translator_pads_by_reflection_and_keeps_the_size(stages):
    pipe = TranslatePipeline.from_pretrained(stages.tokenizer, stages.gray)
    images = pipe(photo(40, 24), n=2, seed=0, cfg_target="image")
    assert [im.size for im in images] == [(40, 24)] * 2
    condition, frame = pipe.condition_image(photo(40, 24))
    assert condition.shape == (1, 1, 16, 16)
    assert (frame.canvas, frame.top, frame.left) == ((40, 40), 8, 0)


def test_guidance_targets_and_cfg_scale_one_run(pipe):
    for target in ("both", "image", "labels"):
        assert len(pipe(sketch(), labels="red hair", n=1, seed=0, cfg_target=target)) == 1
    assert len(pipe(sketch(), n=1, seed=0, cfg_scale=1.0)) == 1


# --- refusals -------------------------------------------------------------------------------------------------------


def test_a_blank_drawing_is_refused_in_one_line(pipe):
    with pytest.raises(ValueError, match="blank") as err:
        pipe(Image.new("RGB", (50, 30), "white"))
    one_line(err)


def test_a_reference_for_a_prior_without_one_is_refused(stages):
    pipe = TranslatePipeline.from_pretrained(stages.tokenizer, stages.plain_lineart)
    assert len(pipe(sketch(), n=1)) == 1
    with pytest.raises(ValueError, match="without a reference") as err:
        pipe(sketch(), reference=photo(16, 16))
    assert "--reference" in one_line(err)


def test_a_prior_of_another_tokenizer_is_refused_naming_both(stages):
    with pytest.raises(ValueError) as err:
        TranslatePipeline.from_pretrained(stages.other_tokenizer, stages.lineart)
    message = one_line(err)
    assert str(stages.other_tokenizer) in message and str(stages.lineart) in message
    assert str(stages.tokenizer) in message  # the one it was trained with


def test_a_prior_without_an_image_condition_cannot_translate_but_can_edit(stages):
    pipe = TranslatePipeline.from_pretrained(stages.tokenizer, stages.labels_only)
    with pytest.raises(ValueError, match="without an image condition") as err:
        pipe(sketch())
    one_line(err)
    result = pipe.edit(photo(16, 16), labels="green hair", strength=0.25)
    assert int(result.changed.sum()) == 4


def test_another_condition_than_the_one_expected_is_refused(stages):
    assert TranslatePipeline.from_pretrained(stages.tokenizer, stages.lineart, condition="lineart")
    with pytest.raises(ValueError, match="trained for condition lineart") as err:
        TranslatePipeline.from_pretrained(stages.tokenizer, stages.lineart, condition="grayscale")
    one_line(err)


def test_swapped_folders_and_bad_options_are_refused(stages, pipe):
    with pytest.raises(ValueError, match="not a tokenizer"):
        TranslatePipeline.from_pretrained(stages.lineart, stages.tokenizer)
    with pytest.raises(ValueError, match="unknown|not one of|hair"):
        pipe(sketch(), labels="purple hair")
    with pytest.raises(ValueError, match="n must be"):
        pipe(sketch(), n=0)
    with pytest.raises(ValueError, match="cfg_target"):
        pipe(sketch(), cfg_target="neither")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        pipe(stages.root / "missing.png")
    for strength in (-0.1, 1.5, True, "half"):
        with pytest.raises(ValueError, match=r"strength must be a number in \[0, 1\]"):
            pipe.edit(photo(16, 16), labels="green hair", strength=strength)
    with pytest.raises(ValueError, match="edit needs labels"):
        pipe.edit(photo(16, 16), labels=None)


# --- edit -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(16, 16), (20, 12)])
def test_strength_zero_returns_the_input_exactly(pipe, size):
    face = photo(*size, seed=4)
    result = pipe.edit(face, labels="green hair", strength=0.0)
    assert isinstance(result, EditResult) and not result.changed.any() and not result.pixels.any()
    assert same(result.image, face) and torch.equal(result.tokens, result.original)
    assert same(pipe.edit(face, labels="green hair", strength=0).image, face)


def test_edit_resamples_the_lowest_scoring_cells_and_keeps_every_other_pixel(pipe):
    face = photo(16, 16, seed=4)
    result = pipe.edit(face, labels="green hair,blue eyes", strength=0.5, seed=0)
    assert result.image.size == (16, 16) and result.changed.shape == (4, 4)
    assert int(result.changed.sum()) == 8  # round(0.5 * 16)
    # the chosen cells are the 8 lowest scores averaged over their 3x3 neighbourhoods
    ranked = neighbourhood_scores(result.scores)
    assert ranked[result.changed].max() <= ranked[~result.changed].min()
    # tokens differ only where re-sampled; every pixel outside the re-sampled cells is the input's own
    assert not (result.tokens != result.original)[~result.changed].any()
    cells = result.changed.repeat_interleave(4, 0).repeat_interleave(4, 1)
    assert torch.equal(result.pixels, cells)
    edited, original = np.asarray(result.image), np.asarray(face)
    assert np.array_equal(edited[~cells.numpy()], original[~cells.numpy()])
    assert not np.array_equal(edited[cells.numpy()], original[cells.numpy()])
    again = pipe.edit(face, labels="green hair,blue eyes", strength=0.5, seed=0)
    assert same(again.image, result.image) and torch.equal(again.changed, result.changed)


def test_neighbourhood_scores_average_each_cell_with_its_neighbours():
    scores = torch.zeros(4, 4)
    scores[0, 0] = -9.0
    ranked = neighbourhood_scores(scores)
    # the corner's 3x3 neighbourhood, edges replicated: the corner itself counts 4 times
    assert ranked[0, 0] == -4.0 and ranked[1, 1] == -1.0 and ranked[2, 2] == 0.0
    assert torch.equal(neighbourhood_scores(torch.full((2, 3), 2.5)), torch.full((2, 3), 2.5))


def test_strength_one_resamples_every_cell(pipe):
    face = photo(16, 16, seed=4)
    result = pipe.edit(face, labels="green hair", strength=1.0, seed=0)
    assert result.changed.all() and result.pixels.all()
    assert (result.tokens != result.original).any()
    assert not same(result.image, face)


def test_a_non_square_face_keeps_its_size_and_never_resamples_padding(pipe):
    face = photo(24, 12, seed=6)  # padded top and bottom: cells of the first and last grid row are padding only
    result = pipe.edit(face, labels="red hair", strength=0.5, seed=2)
    assert result.image.size == (24, 12) and result.pixels.shape == (12, 24)
    assert not result.changed[0].any() and not result.changed[3].any()
    assert math.isinf(result.scores[0, 0]) and int(result.changed.sum()) == 4  # round(0.5 * 8 picture cells)
    edited, original = np.asarray(result.image), np.asarray(face)
    keep = ~result.pixels.numpy()
    assert keep.any() and np.array_equal(edited[keep], original[keep])


def test_edit_with_a_reference_and_unknown_labels(pipe):
    face = photo(16, 16, seed=4)
    assert pipe.edit(face, labels="blonde hair", strength=0.25, reference=photo(8, 8)).image.size == (16, 16)
    with pytest.raises(ValueError, match="purple") as err:
        pipe.edit(face, labels="purple hair")
    one_line(err)


def test_maskgit_scores_with_the_whole_masked_forward(stages, tmp_path):
    pytest.importorskip("vqstack_maskgit", reason="plugins/vqstack-maskgit is not installed")
    prior_dir = save_prior(tmp_path, "maskgit", stages.tokenizer, prior="maskgit", image_condition=LINEART,
                           reference=True)
    pipe = TranslatePipeline.from_pretrained(stages.tokenizer, prior_dir)
    assert [im.size for im in pipe(sketch(), n=2, seed=0)] == [(90, 60)] * 2
    face = photo(16, 16, seed=4)
    result = pipe.edit(face, labels="green hair", strength=0.5, seed=0)
    assert int(result.changed.sum()) == 8
    assert np.array_equal(np.asarray(result.image)[~result.pixels.numpy()],
                          np.asarray(face)[~result.pixels.numpy()])
    mask = torch.ones(2, 16, dtype=torch.bool)  # every position masked: each token given labels and condition
    assert torch.allclose(manual_scores(pipe, face, result, "green hair", mask=mask), result.scores, atol=1e-5)


def manual_scores(pipe, face, result, labels, **kwargs):
    """log p(token | labels, its line art) - log p(token | null labels, its line art), by hand."""
    from vqstack.pipelines.images import from_pil
    from vqstack.pipelines.translation import Frame

    pixels = from_pil(Frame(face.size, pipe.image_size).pad(face), pipe.image_size)
    condition = pipe.add_reference(pipe.condition_of(pixels), None)
    tokens = result.original.view(1, -1).expand(2, -1)
    with torch.no_grad():
        logits = pipe.prior(tokens, labels=[labels, None], image=condition, **kwargs).logits.log_softmax(-1)
    loglik = logits.gather(-1, tokens[..., None])[..., 0]
    return (loglik[0] - loglik[1]).view(4, 4)


def test_ar_scores_are_the_teacher_forced_log_ratio(pipe):
    face = photo(16, 16, seed=4)
    result = pipe.edit(face, labels="green hair", strength=0.25, seed=0)
    assert torch.allclose(manual_scores(pipe, face, result, "green hair"), result.scores, atol=1e-5)
