"""`vqstack sample --out-dir` (issue 22, part 4): one PNG per image in batches, resumable to the same bytes as an
uninterrupted run, refusing a folder made with other arguments. Tiny random models: the code paths, not pictures."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

import vqstack
from helpers.recipes import tiny_tokenizer_config
from vqstack.cli import main
from vqstack.pipelines.folders import PARTIAL, RECORD_NAME, batch_seed, image_names
from vqstack.pipelines.generation import Pipeline

ATTRIBUTES = {"hair": ["blonde", "blue", "red"], "eyes": ["blue", "red"]}
NAMES = [f"{i:02d}.png" for i in range(10)]  # --n 10: zero-padded to two digits


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    """A tiny tokenizer (16 px, 4x4 tokens, 32 codes) and two tiny tag-conditioned priors (other weights)."""
    root = tmp_path_factory.mktemp("sample-folder")
    torch.manual_seed(0)
    vqstack.Tokenizer.from_config(tiny_tokenizer_config()).save_pretrained(root / "tokenizer")
    for seed, name in ((1, "prior"), (2, "other-prior")):
        torch.manual_seed(seed)
        prior = vqstack.build("prior", "ar", vocab_size=32, seq_len=16, dim=32, depth=1, heads=2,
                              attributes=ATTRIBUTES)
        torch.nn.init.normal_(prior.head.weight, std=1.0)  # a random head: the conditions and seeds show
        vqstack.save_component(prior, root / name)
    return root


def sample(stages, out_dir, *options, prior="prior"):
    return main(["sample", "--tokenizer", str(stages / "tokenizer"), "--prior", str(stages / prior),
                 "--out-dir", str(out_dir), "--device", "cpu", *options])


COMMON = ("--n", "10", "--batch-size", "4", "--seed", "3", "--labels", "blue hair;red hair,blue eyes;",
          "--cfg-scale", "2")


def pngs(folder):
    return {f.name: f.read_bytes() for f in sorted(folder.iterdir()) if f.suffix == ".png"}


@pytest.fixture
def calls(monkeypatch):
    """Counts the pipeline's batches; ``calls.fail_at = k`` raises KeyboardInterrupt (Ctrl-C) at the k-th."""
    original = Pipeline.__call__
    state = type("Calls", (), {"count": 0, "fail_at": None})()

    def counted(self, *args, **kwargs):
        state.count += 1
        if state.count == state.fail_at:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Pipeline, "__call__", counted)
    return state


@pytest.fixture(scope="module")
def reference(stages, tmp_path_factory):
    """An uninterrupted run."""
    out = tmp_path_factory.mktemp("reference") / "samples"
    assert sample(stages, out, *COMMON) == 0
    return out


def test_writes_n_pngs_of_the_image_size_with_padded_names(reference, stages, capsys, tmp_path):
    assert list(pngs(reference)) == NAMES
    for name in NAMES:
        with Image.open(reference / name) as image:
            assert image.size == (16, 16) and image.mode == "RGB" and image.format == "PNG"
    record = json.loads((reference / RECORD_NAME).read_text())
    assert {k: record[k] for k in ("n", "batch_size", "seed", "labels", "cfg_scale", "device")} == {
        "n": 10, "batch_size": 4, "seed": 3, "labels": "blue hair;red hair,blue eyes;", "cfg_scale": 2.0,
        "device": "cpu"}
    assert len(record["tokenizer_sha256"]) == len(record["prior_sha256"]) == 64
    assert image_names(10000)[:2] == ["00000.png", "00001.png"] and image_names(10000)[-1] == "09999.png"
    assert batch_seed(0, 1) != batch_seed(0, 2) != batch_seed(1, 1)

    assert sample(stages, tmp_path / "five", "--n", "5") == 0  # defaults: batch 64, seed 0, one digit
    assert list(pngs(tmp_path / "five")) == ["0.png", "1.png", "2.png", "3.png", "4.png"]
    out = capsys.readouterr().out
    assert out.startswith(f"5 images of 16x16 in {tmp_path / 'five'}: 5 sampled in ") and "images/s" in out


def test_an_interrupted_run_resumes_to_the_bytes_of_an_uninterrupted_one(reference, stages, tmp_path, calls,
                                                                           capsys):
    out = tmp_path / "samples"
    calls.fail_at = 3  # Ctrl-C during the third batch of three
    assert sample(stages, out, *COMMON) == 130
    assert list(pngs(out)) == NAMES[:8]
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"vqstack sample: interrupted with 8 of 10 images in {out}; run the same command again to resume."
    (out / ".08.png.4242.partial").write_bytes(b"\x89PNG half")  # what a kill in the middle of a save leaves

    calls.count, calls.fail_at = 0, None
    assert sample(stages, out, *COMMON) == 0
    assert calls.count == 1  # only the missing batch was sampled
    assert pngs(out) == pngs(reference)
    assert not [f for f in out.iterdir() if PARTIAL.fullmatch(f.name)]
    assert "2 sampled" in capsys.readouterr().out

    (out / "05.png").unlink()  # a deleted file: its batch (04-07) is drawn again, to the same bytes
    calls.count = 0
    assert sample(stages, out, *COMMON) == 0
    assert calls.count == 1 and pngs(out) == pngs(reference)

    calls.count = 0  # a finished folder: nothing is loaded or sampled
    assert sample(stages, out, *COMMON) == 0
    assert calls.count == 0 and capsys.readouterr().out.endswith(f"all 10 images already in {out}; nothing to do.\n")


def test_the_images_are_those_vqstack_eval_scores(reference, stages):
    """The same per-batch seeds, labels in turn and 8-bit round trip as `vqstack eval --prior ... --num-samples 10
    --batch-size 4 --seed 3`: that command scores exactly this folder's images."""
    from vqstack.evaluation.command import sample_labels
    from vqstack.evaluation.generation import sample_images

    pipe = Pipeline.from_pretrained(stages / "tokenizer", stages / "prior")
    batches = sample_images(pipe, 10, sample_labels("blue hair;red hair,blue eyes;"), batch_size=4, seed=3,
                            cfg_scale=2.0)
    sampled = torch.cat(list(batches))
    saved = np.stack([np.asarray(Image.open(reference / name)) for name in NAMES])
    assert np.array_equal(((sampled + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy(), saved)


@pytest.mark.parametrize("change, named", [
    (("--cfg-scale", "3"), "--cfg-scale 2.0 there, 3.0 now"),
    (("--batch-size", "5"), "--batch-size 4 there, 5 now"),
    (("--seed", "4"), "--seed 3 there, 4 now"),
    (("--n", "12"), "--n 10 there, 12 now"),
    (("--labels", "blue hair"), '--labels "blue hair;red hair,blue eyes;" there, "blue hair" now'),
    (("--top-k", "5"), "--top-k none there, 5 now"),
    (("--prior", "other-prior"), "--prior weights (sha256)"),
])
def test_a_folder_made_with_other_arguments_is_refused_naming_them(reference, stages, tmp_path, calls, capsys,
                                                                    change, named):
    options = dict(zip(COMMON[::2], COMMON[1::2]))
    prior = "prior"
    if change[0] == "--prior":
        prior = change[1]
    else:
        options[change[0]] = change[1]
    before = pngs(reference)
    assert sample(stages, reference, *[x for item in options.items() for x in item], prior=prior) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"vqstack sample: error: --out-dir {reference} was started with "
                                               f"other arguments (") and named in err[0], err
    assert "--overwrite" in err[0] and calls.count == 0 and pngs(reference) == before


def test_overwrite_starts_the_folder_again(reference, stages, tmp_path):
    out = tmp_path / "samples"
    assert sample(stages, out, *COMMON) == 0
    assert sample(stages, out, "--n", "3", "--seed", "3", "--overwrite") == 0
    assert list(pngs(out)) == ["0.png", "1.png", "2.png"]  # 00.png .. 09.png of the other run are gone
    assert json.loads((out / RECORD_NAME).read_text())["n"] == 3


def test_foreign_numbered_pngs_are_not_mixed_in(stages, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    Image.new("RGB", (16, 16)).save(out / "00.png")
    assert sample(stages, out, "--n", "10") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"holds 1 numbered PNGs but no {RECORD_NAME}" in err[0]


@pytest.mark.parametrize("argv, message", [
    (("--out", "grid.png", "--out-dir", "dir"), "--out grid.png (one grid) and --out-dir dir (one PNG per image) "
                                                "exclude each other; give one."),
    (("--out", "grid.png", "--batch-size", "8"), "--batch-size is for --out-dir"),
    (("--out", "grid.png", "--overwrite"), "--overwrite is for --out-dir"),
    (("--out-dir", "dir", "--columns", "4"), "--columns lays out the grid of --out"),
    (("--out-dir", "dir", "--batch-size", "0"), "--batch-size must be an int >= 1 with --out-dir, got 0."),
    (("--out-dir", "dir", "--seed", "-1"), "--seed must be an int >= 0 with --out-dir, got -1."),
])
def test_option_mistakes_end_in_one_line(stages, tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main(["sample", "--tokenizer", str(stages / "tokenizer"), "--prior", str(stages / "prior"),
                 "--device", "cpu", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vqstack sample: error: ") and message in err[0], err
    assert not list(tmp_path.iterdir())  # nothing written


def test_the_grid_of_out_is_unchanged(stages, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["sample", "--tokenizer", str(stages / "tokenizer"), "--prior", str(stages / "prior"),
                 "--device", "cpu", "--n", "4"]) == 0
    with Image.open(tmp_path / "samples.png") as grid:  # the default --out
        assert grid.size == (2 * 18 + 2, 2 * 18 + 2)
