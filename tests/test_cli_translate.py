"""`vqstack translate` and `vqstack edit` on tiny random models: what they write and say, and the mistakes that end
in one line on stderr and exit code 2."""
import numpy as np
import pytest
from PIL import Image

from test_translate import make_stages, photo, sketch
from vqstack.cli import main


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    root = tmp_path_factory.mktemp("translate-cli")
    stages = make_stages(root)
    sketch().save(root / "sketch.png")
    Image.new("RGB", (40, 30), "white").save(root / "blank.png")
    photo(20, 20, seed=2).save(root / "face.png")
    photo(30, 10, seed=3).save(root / "ref.jpg")
    return stages


def translate(stages, out, *options, prior=None, tokenizer=None, image="sketch.png"):
    return main(["translate", "--tokenizer", str(tokenizer or stages.tokenizer),
                 "--prior", str(prior or stages.lineart), "--image", str(stages.root / image), "--out", str(out),
                 "--device", "cpu", *options])


def edit(stages, out, *options, prior=None, image="face.png"):
    return main(["edit", "--tokenizer", str(stages.tokenizer), "--prior", str(prior or stages.lineart),
                 "--image", str(stages.root / image), "--out", str(out), "--device", "cpu", *options])


def test_translate_writes_one_image_or_a_grid(stages, tmp_path, capsys):
    assert translate(stages, tmp_path / "one.png", "--n", "1", "--labels", "green hair,blue eyes",
                     "--reference", str(stages.root / "ref.jpg")) == 0
    assert Image.open(tmp_path / "one.png").size == (90, 60)
    assert capsys.readouterr().out == f"1 image of 90x60 -> {tmp_path / 'one.png'}\n"
    assert translate(stages, tmp_path / "grid.jpg", "--n", "4", "--seed", "3", "--cfg-scale", "1.5",
                     "--cfg-target", "image", "--temperature", "0.9", "--top-k", "8") == 0
    assert Image.open(tmp_path / "grid.jpg").size == (2 + 2 * 92, 2 + 2 * 62)  # make_grid_image, 2 columns
    assert capsys.readouterr().out == f"a grid of 4 images of 90x60 -> {tmp_path / 'grid.jpg'}\n"
    again = tmp_path / "again.png"
    translate(stages, tmp_path / "first.png", "--n", "1", "--seed", "5")
    translate(stages, again, "--n", "1", "--seed", "5")
    assert np.array_equal(np.asarray(Image.open(again)), np.asarray(Image.open(tmp_path / "first.png")))


def test_edit_writes_the_face_at_its_size(stages, tmp_path, capsys):
    assert edit(stages, tmp_path / "edited.png", "--labels", "green hair", "--strength", "0.5", "--seed", "1") == 0
    assert Image.open(tmp_path / "edited.png").size == (20, 20)
    assert capsys.readouterr().out == (f"8 of 16 token cells re-sampled (strength 0.5), 20x20 image -> "
                                       f"{tmp_path / 'edited.png'}\n")
    assert edit(stages, tmp_path / "kept.png", "--labels", "green hair", "--strength", "0") == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "kept.png")), np.asarray(Image.open(stages.root /
                                                                                              "face.png")))


@pytest.mark.parametrize("case, expected", [
    ("blank", "blank"),
    ("missing image", "does not exist"),
    ("image folder", "is a folder"),
    ("missing reference", "--reference"),
    ("reference without reference channels", "without a reference"),
    ("bad suffix", "no image format"),
    ("unknown labels", "purple"),
    ("zero images", "n must be"),
    ("other tokenizer", "was trained on the tokens of"),
    ("swapped", "not a tokenizer"),
    ("no image condition", "without an image condition"),
])
def test_translate_mistakes_end_in_one_line(stages, tmp_path, capsys, case, expected):
    out = tmp_path / "out.png"
    runs = {
        "blank": lambda: translate(stages, out, image="blank.png"),
        "missing image": lambda: translate(stages, out, image="nope.png"),
        "image folder": lambda: translate(stages, out, image="."),
        "missing reference": lambda: translate(stages, out, "--reference", str(tmp_path / "nope.png")),
        "reference without reference channels": lambda: translate(
            stages, out, "--reference", str(stages.root / "ref.jpg"), prior=stages.plain_lineart),
        "bad suffix": lambda: translate(stages, tmp_path / "out.txt"),
        "unknown labels": lambda: translate(stages, out, "--labels", "purple hair"),
        "zero images": lambda: translate(stages, out, "--n", "0"),
        "other tokenizer": lambda: translate(stages, out, tokenizer=stages.other_tokenizer),
        "swapped": lambda: translate(stages, out, tokenizer=stages.lineart, prior=stages.tokenizer),
        "no image condition": lambda: translate(stages, out, prior=stages.labels_only),
    }
    assert runs[case]() == 2
    err = capsys.readouterr().err
    assert err.startswith("vqstack translate: error: ") and err.count("\n") == 1 and expected in err
    assert not out.exists()


@pytest.mark.parametrize("options, expected", [
    (["--labels", "green hair", "--strength", "1.5"], "strength must be a number in [0, 1]"),
    (["--labels", "purple hair"], "purple"),
    (["--labels", ""], "edit needs labels"),
    (["--labels", "green hair", "--reference", "nope.png"], "--reference"),
])
def test_edit_mistakes_end_in_one_line(stages, tmp_path, capsys, options, expected):
    assert edit(stages, tmp_path / "out.png", *options) == 2
    err = capsys.readouterr().err
    assert err.startswith("vqstack edit: error: ") and err.count("\n") == 1 and expected in err
    assert not (tmp_path / "out.png").exists()


def test_edit_needs_labels_and_reads_one_face(stages, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        edit(stages, tmp_path / "out.png")  # --labels is required: argparse's usage error, exit 2
    assert exit_.value.code == 2
    assert "--labels" in capsys.readouterr().err
    assert edit(stages, tmp_path / "out.png", "--labels", "red hair", image=".") == 2
    assert "is a folder" in capsys.readouterr().err


def test_translate_refuses_a_translator_for_another_condition_naming_both(stages, tmp_path, capsys):
    assert translate(stages, tmp_path / "x.png", "--condition", "grayscale") == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "lineart" in err and "grayscale" in err
    assert not (tmp_path / "x.png").exists()
    assert translate(stages, tmp_path / "ok.png", "--condition", "lineart", "--n", "1") == 0
