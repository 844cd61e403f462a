"""`vqstack restore` on a tiny untrained restorer: a file to a file, a folder to a folder, --upscale, and the
mistakes that end in one line and exit code 2."""
import numpy as np
import pytest
from PIL import Image

from test_restore_pipeline import make_stages
from vqstack.cli import main


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    return make_stages(tmp_path_factory.mktemp("restore-cli"))


def write_image(path, height=16, width=16, seed=0, mode="RGB"):
    channels = (3,) if mode == "RGB" else ()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, *channels), dtype=np.uint8),
                    mode).save(path)
    return path


def restore(stages, image, out, *options):
    tokenizer, restorer = stages
    return main(["restore", "--tokenizer", str(tokenizer), "--restorer", str(restorer), "--image", str(image),
                 "--out", str(out), "--device", "cpu", *options])


def test_a_file_gives_a_file(stages, tmp_path, capsys):
    source = write_image(tmp_path / "face.png", 20, 30)
    assert restore(stages, source, tmp_path / "clean.png") == 0
    out = Image.open(tmp_path / "clean.png")
    assert out.size == (30, 20) and out.mode == "RGB"
    line = capsys.readouterr().out
    assert line.startswith("1 image restored (fidelity 0.5) in ") and " s per image on cpu -> " in line
    assert line.count("\n") == 1


def test_a_folder_gives_a_folder_with_the_same_names(stages, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    write_image(folder / "a.png", seed=1), write_image(folder / "b.jpg", 24, 32, seed=2)
    write_image(folder / "c.bmp", 16, 16, seed=3, mode="L")
    (folder / "notes.txt").write_text("not an image")
    assert restore(stages, folder, tmp_path / "out", "--fidelity", "0.8", "--batch-size", "2") == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.jpg", "c.bmp"]
    assert Image.open(tmp_path / "out" / "b.jpg").size == (32, 24)
    assert Image.open(tmp_path / "out" / "c.bmp").mode == "RGB"
    assert capsys.readouterr().out.startswith("3 images restored (fidelity 0.8) in ")


def test_upscale_writes_larger_images(stages, tmp_path, capsys):
    source = write_image(tmp_path / "small.png", 8, 12)
    assert restore(stages, source, tmp_path / "big.jpg", "--upscale", "4") == 0
    assert Image.open(tmp_path / "big.jpg").size == (48, 32)
    assert "(fidelity 0.5, upscale x4)" in capsys.readouterr().out


def test_a_file_into_an_existing_folder_keeps_its_name(stages, tmp_path):
    source = write_image(tmp_path / "face.png")
    (tmp_path / "out").mkdir()
    assert restore(stages, source, tmp_path / "out") == 0
    assert (tmp_path / "out" / "face.png").is_file()


def test_the_same_fidelity_gives_the_pipelines_image(stages, tmp_path):
    from vqstack import RestorePipeline

    source = write_image(tmp_path / "face.png", seed=7)
    assert restore(stages, source, tmp_path / "clean.png", "--fidelity", "0.3") == 0
    expected = RestorePipeline.from_pretrained(*stages)(Image.open(source), fidelity=0.3)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "clean.png")), np.asarray(expected))


def broken_folder(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    write_image(folder / "a.png")
    (folder / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return folder


MISTAKES = {  # name: (make the arguments from tmp_path and the stages, words the one line must hold)
    "missing image": (lambda t, s: (s, t / "nothing.png", t / "out.png"), "--image {t}/nothing.png does not exist"),
    "out is image": (lambda t, s: (s, write_image(t / "a.png"), t / "a.png"), "is --image itself"),
    "unreadable file in a folder": (lambda t, s: (s, broken_folder(t), t / "out"),
                                    "--image {t}/in/b.png is not a readable image"),
    "folder without images": (lambda t, s: (s, (t / "empty").mkdir() or t / "empty", t / "out"),
                              "is a folder without images"),
    "unknown out format": (lambda t, s: (s, write_image(t / "a.png"), t / "a.restored"), "no image format is known"),
    "upscale 0": (lambda t, s: (s, write_image(t / "a.png"), t / "b.png", "--upscale", "0"),
                  "upscale must be an int >= 1"),
    "fidelity 2": (lambda t, s: (s, write_image(t / "a.png"), t / "b.png", "--fidelity", "2"),
                   "fidelity must be in [0, 1]"),
    "swapped folders": (lambda t, s: (s[::-1], write_image(t / "a.png"), t / "b.png"),
                        "were --tokenizer and --restorer swapped"),
    "restorer of another tokenizer": (lambda t, s: ((make_stages(t / "other", seed=1)[0], s[1]),
                                                    write_image(t / "a.png"), t / "b.png"),
                                      "was trained for the tokenizer"),
}


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_mistakes_exit_2_with_one_line(stages, tmp_path, capsys, mistake):
    make, words = MISTAKES[mistake]
    used_stages, image, out, *options = make(tmp_path, stages)
    assert restore(used_stages, image, out, *options) == 2
    err = capsys.readouterr().err
    assert err.startswith("vqstack restore: error: ") and err.count("\n") == 1, err
    assert words.format(t=tmp_path) in err
    if mistake == "restorer of another tokenizer":  # both folders named
        assert str(used_stages[0]) in err and str(stages[1]) in err
    if mistake != "out is image":
        assert not out.exists() or out.is_dir() and not any(out.iterdir())
