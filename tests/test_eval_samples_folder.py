"""`vqstack eval --samples DIR`: the generation metrics of a folder of images (what `vqstack sample --out-dir` wrote,
or any other) instead of samples drawn by eval itself. Tiny random models and a stand-in features network (each
image's mean colour, so a Fréchet distance has a known answer): the code paths, not pictures."""
import json
import shlex
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import vqstack
from helpers.recipes import reset_accelerate, tiny_tokenizer_config, write_image_folder, write_tagged_folder
from test_eval_cli import MeanColourPlugin
from vqstack.cli import main
from vqstack.core.serialization import weights_sha256
from vqstack.evaluation.samples_folder import folder_batches, open_samples

SAMPLE = ("--n", "8", "--batch-size", "4", "--seed", "3", "--labels", "blue hair;red hair", "--device", "cpu")
NAMES = [f"{i}.png" for i in range(8)]  # --n 8: one digit
FD = ("--features", "mean-colour", "--metrics", "fd,precision,recall", "--no-reference-cache")


@pytest.fixture(autouse=True)
def mean_colour(fresh_plugins):
    vqstack.register_plugin(MeanColourPlugin(), name="test-mean-colour")
    yield
    reset_accelerate()  # the command's Accelerator must not leak into the next test


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A tiny tokenizer (16 px, 4x4 tokens, 32 codes), two tag-conditioned priors (other weights), 12 tagged 16x16
    reference images, a token dataset encoded "from" them (for nll), and a folder of 8 samples of the first prior."""
    from datasets import Dataset

    from vqstack.data.images import describe_source
    from vqstack.data.tokens import save_token_dataset

    root = tmp_path_factory.mktemp("eval-samples")
    torch.manual_seed(0)
    vqstack.Tokenizer.from_config(tiny_tokenizer_config()).save_pretrained(root / "tokenizer")
    for seed, name in ((1, "prior"), (2, "other-prior")):
        torch.manual_seed(seed)
        prior = vqstack.build("prior", "ar", vocab_size=32, seq_len=16, dim=32, depth=1, heads=2,
                              attributes={"hair": ["blonde", "blue", "red"]})
        torch.nn.init.normal_(prior.head.weight, std=1.0)  # a random head: the seeds show in the images
        vqstack.save_component(prior, root / name)
    images = write_tagged_folder(root / "images", count=12)
    rows = {"tokens": torch.randint(0, 32, (12, 16)).tolist(), "hair": ["blue", "red", "blonde", None] * 3}
    save_token_dataset(Dataset.from_dict(rows), root / "tokens", (4, 4), 32, label_columns=["hair"],
                       **describe_source(str(images)))
    assert main(["sample", "--tokenizer", str(root / "tokenizer"), "--prior", str(root / "prior"), *SAMPLE,
                 "--out-dir", str(root / "samples")]) == 0
    return root


def evaluate(root, out, *options, data="images"):
    """`vqstack eval ... --json out` -> (exit code, the JSON record or None)."""
    code = main(["eval", "--data", str(root / data), *options, "--json", str(out)])
    return code, json.loads(out.read_text()) if out.is_file() else None


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vqstack eval: error: "), err
    return err[0]


def mean_colours(files) -> np.ndarray:
    """Each 8-bit image's mean colour in [-1, 1], loaded by hand: the stand-in network's features."""
    return np.stack([(np.asarray(Image.open(f).convert("RGB"), dtype=np.float64) / 127.5 - 1).mean((0, 1))
                     for f in files])


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||² + tr(Sa + Sb - 2 (Sa Sb)^½), unbiased covariances; tr((Sa Sb)^½) is the sum of the square
    roots of Sa Sb's eigenvalues (real and >= 0 for covariances)."""
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root_trace = np.sqrt(np.clip(np.linalg.eigvals(sa @ sb).real, 0, None)).sum()
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(sa) + np.trace(sb) - 2 * root_trace)


def reference_colours(root) -> np.ndarray:
    return mean_colours(sorted((root / "images").glob("*.png")))  # 16x16: the center crop keeps them whole


def test_a_sampled_folder_scores_as_by_hand_and_as_eval_sampling_itself(root, tmp_path):
    samples = root / "samples"
    code, folder = evaluate(root, tmp_path / "folder.json", "--samples", str(samples), *FD, "--batch-size", "3",
                            data="tokens")
    assert code == 0
    # known answer: the Fréchet distance of the PNGs' mean colours, computed here in float64 (the metric sums
    # float32 features in float64: 1e-5 relative covers it, a different image would move it far more)
    expected = frechet(mean_colours([samples / name for name in NAMES]), reference_colours(root))
    assert folder["fd-mean-colour"] == pytest.approx(expected, rel=1e-5)
    assert folder["samples"] == 8 and folder["images"] == 12 and folder["resolution"] == 16
    recorded = json.loads((samples / "samples.json").read_text())
    assert folder["samples_folder"] == {"path": str(samples.resolve()), "samples.json": recorded,
                                        "files": "0.png .. 7.png"}
    assert not {"sampling", "prior", "tokenizer", "nll"} & set(folder)  # no prior given: no nll added for token data

    # the same images sampled by eval itself (same --num-samples, --batch-size, --seed, --labels): its samples pass
    # through 8-bit PIL images too, so the pixels are identical and only the order of float sums (another batch
    # size) may differ: 1e-6 relative
    code, sampled = evaluate(root, tmp_path / "sampled.json", "--tokenizer", str(root / "tokenizer"), "--prior",
                             str(root / "prior"), *FD, "--num-samples", "8", "--batch-size", "4", "--seed", "3",
                             "--labels", "blue hair;red hair", data="tokens")
    assert code == 0 and sampled["sampling"]["seed"] == 3
    for name in ("fd-mean-colour", "precision", "recall"):
        assert folder[name] == pytest.approx(sampled[name], rel=1e-6), name

    # with the stages that made the folder: checked, recorded, and the prior gives nll as when eval samples
    code, both = evaluate(root, tmp_path / "both.json", "--samples", str(samples), "--tokenizer",
                          str(root / "tokenizer"), "--prior", str(root / "prior"), *FD, data="tokens")
    assert code == 0 and both["nll"] == pytest.approx(sampled["nll"], rel=1e-6)
    assert both["fd-mean-colour"] == pytest.approx(folder["fd-mean-colour"], rel=1e-6)
    assert both["prior"]["sha256"] == recorded["prior_sha256"] and "sampling" not in both


def test_num_samples_takes_the_first_images_in_sample_order(root, tmp_path, capsys):
    code, record = evaluate(root, tmp_path / "five.json", "--samples", str(root / "samples"), *FD,
                            "--num-samples", "5")
    expected = frechet(mean_colours([root / "samples" / name for name in NAMES[:5]]), reference_colours(root))
    assert code == 0 and record["samples"] == 5 and record["fd-mean-colour"] == pytest.approx(expected, rel=1e-5)

    capsys.readouterr()
    assert evaluate(root, tmp_path / "nine.json", "--samples", str(root / "samples"), *FD, "--num-samples", "9") \
        == (2, None)
    assert error_line(capsys).endswith(f"--num-samples 9 asks for more images than --samples {root / 'samples'} "
                                       f"holds (8); give --num-samples 8 or fewer, or leave it out to score them all.")


def test_an_incomplete_folder_is_refused_with_the_command_that_finishes_it(root, tmp_path, capsys):
    folder = tmp_path / "samples"
    shutil.copytree(root / "samples", folder)
    (folder / "5.png").unlink()  # what an interrupted run leaves: batch 4-7 unfinished
    assert evaluate(root, tmp_path / "eval.json", "--samples", str(folder), *FD, "--num-samples", "4") == (2, None)
    line = error_line(capsys)
    assert f"--samples {folder} holds 7 of the 8 images its samples.json records: finish it with `vqstack sample " \
           in line and "(the same command resumes the interrupted run)." in line

    command = shlex.split(line.split("`")[1])  # the command it names finishes the folder to the same images
    assert command[:2] == ["vqstack", "sample"] and main(command[1:]) == 0
    assert [(folder / n).read_bytes() for n in NAMES] == [(root / "samples" / n).read_bytes() for n in NAMES]
    assert evaluate(root, tmp_path / "eval.json", "--samples", str(folder), *FD)[0] == 0


@pytest.mark.parametrize("option", ["--prior", "--tokenizer"])
def test_stages_other_than_those_that_made_the_folder_are_refused(root, tmp_path, capsys, option):
    other = root / "other-tokenizer"
    if option == "--tokenizer" and not other.exists():
        torch.manual_seed(5)
        vqstack.Tokenizer.from_config(tiny_tokenizer_config()).save_pretrained(other)
    given = root / ("other-prior" if option == "--prior" else "other-tokenizer")
    made = root / option[2:]
    assert evaluate(root, tmp_path / "eval.json", "--samples", str(root / "samples"), option, str(given), *FD) \
        == (2, None)
    line = error_line(capsys)
    assert f"{option} {given} (weights sha256 {weights_sha256(given)[:12]}) is not what made --samples" in line
    assert f"samples.json: {made}, weights sha256 {weights_sha256(made)[:12]})" in line


def test_a_metric_of_the_prior_without_prior_is_refused(root, tmp_path, capsys):
    assert evaluate(root, tmp_path / "eval.json", "--samples", str(root / "samples"), "--metrics", "fd-vgg,nll",
                    data="tokens") == (2, None)
    line = error_line(capsys)
    assert "Metric 'nll' scores the prior itself" in line and f"--samples {root / 'samples'} gives only images: " \
           "add --prior DIR, or choose from the image metrics gfid, fd, precision, recall, fd-" in line


def test_a_plain_folder_of_images_without_samples_json(root, tmp_path, capsys):
    plain = write_image_folder(tmp_path / "plain", count=5, size=16, seed=7)  # 000.png .. 004.png
    (plain / "notes.txt").write_text("not an image")
    (plain / ".005.png.123.partial").write_bytes(b"\x89PNG half")  # hidden: ignored
    (plain / "more").mkdir()
    Image.new("RGB", (24, 24)).save(plain / "more" / "x.png")  # sub-folders are not read
    code, record = evaluate(root, tmp_path / "plain.json", "--samples", str(plain), *FD, "--batch-size", "2")
    expected = frechet(mean_colours(sorted(plain.glob("*.png"))), reference_colours(root))
    assert code == 0 and record["samples"] == 5 and record["fd-mean-colour"] == pytest.approx(expected, rel=1e-5)
    assert record["samples_folder"] == {"path": str(plain.resolve()), "samples.json": None,
                                        "files": "000.png .. 004.png"}
    capsys.readouterr()

    Image.new("RGB", (24, 24)).save(plain / "005.png")
    assert evaluate(root, tmp_path / "sizes.json", "--samples", str(plain), *FD) == (2, None)
    assert f"--samples {plain}: 005.png is 24x24 but 000.png is 16x16;" in error_line(capsys)

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "samples.txt").write_text("")
    assert evaluate(root, tmp_path / "empty.json", "--samples", str(empty), *FD) == (2, None)
    assert f"--samples {empty} holds no images (.png, .jpg" in error_line(capsys)


@pytest.mark.parametrize("options, message", [
    (("--seed", "3"), "--seed: sampling options, but with --samples"),
    (("--labels", "blue hair", "--cfg-scale", "2"), "--labels, --cfg-scale: sampling options"),
    (("--metrics", "psnr"), "Metric 'psnr' measures a tokenizer (its reconstructions or tokens), not samples; with "
                            "--samples choose from gfid, fd, precision, recall"),
    (("--resolution", "16"), "(with --samples: the folder's image size)"),
])
def test_options_that_do_not_fit_a_folder_end_in_one_line(root, tmp_path, capsys, options, message):
    assert evaluate(root, tmp_path / "eval.json", "--samples", str(root / "samples"), *options) == (2, None)
    assert message in error_line(capsys)


def test_without_samples_the_tokenizer_is_still_needed(root, tmp_path, capsys):
    assert evaluate(root, tmp_path / "eval.json", "--metrics", "psnr") == (2, None)
    assert "--tokenizer DIR is needed" in error_line(capsys)


def test_processes_share_the_folder_in_chunks_as_eval_shares_its_samples(root):
    """Chunk i of --batch-size images goes to process i % world, as eval's own sampling spreads its chunks."""
    folder = open_samples(root / "samples")
    shares = [torch.cat(list(folder_batches(folder, 3, rank=rank, world=2))) for rank in (0, 1)]
    whole = torch.cat(list(folder_batches(folder, 3)))
    assert [len(share) for share in shares] == [5, 3]  # chunks 0, 2 (images 0-2, 6-7) and chunk 1 (images 3-5)
    assert torch.equal(torch.cat([shares[0][:3], shares[1], shares[0][3:]]), whole)
    assert torch.equal(whole, torch.stack([torch.from_numpy(np.array(Image.open(root / "samples" / n))).permute(
        2, 0, 1).float() / 127.5 - 1 for n in NAMES]))  # the 8-bit values, in sample order
