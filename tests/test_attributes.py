"""What PSNR does not see: the colour-histogram distance and attribute fidelity (a classifier of the data's own tags
on originals and reconstructions), each against a known answer.

The "tokenizers" here are STAND-INS that return their input (identity) or a grey version of it (colour destroyed),
or a random tiny tokenizer where only the plumbing is checked;
the synthetic faces are 16x16 images whose top third ("hair") is red, green or blue."""
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import vqstack
from helpers.recipes import reset_accelerate, tiny_tokenizer_config
from vqstack.cli import main as cli_main
from vqstack.data.images import DataError, load_image_dataset
from vqstack.evaluation import attributes, build_suite, evaluate_tokenizer, parse_metrics
from vqstack.evaluation.attributes import attribute_fidelity, column_tags
from vqstack.evaluation.metrics import ColourHistogramDistance

HAIR = {"red": (200, 30, 30), "green": (30, 180, 40), "blue": (30, 50, 210)}


def write_faces(folder: Path, per_class: int = 30, untagged: int = 12, size: int = 16, seed: int = 0) -> Path:
    """Synthetic tagged faces: the top third of each image is its hair colour (plus noise), the rest random; the
    untagged rows have a hair colour too but a null tag."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    tags = [colour for colour in HAIR for _ in range(per_class)] + [None] * untagged
    rng.shuffle(tags)
    with (folder / "metadata.jsonl").open("w") as f:
        for i, hair in enumerate(tags):
            image = rng.uniform(60, 200, size=(size, size, 3))
            image[: size // 3] = np.array(HAIR[hair or list(HAIR)[i % 3]]) + rng.normal(0, 15, (size // 3, size, 3))
            Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(folder / f"{i:03d}.png")
            f.write(json.dumps({"file_name": f"{i:03d}.png", "hair": hair, "mood": "calm"}) + "\n")
    return folder


class Identity(nn.Module):
    """STAND-IN tokenizer whose reconstructions are the originals."""

    def __init__(self):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))  # evaluation reads the device from the parameters

    def encode(self, images):
        return images

    def decode(self, tokens):
        return tokens


class Grey(Identity):
    """STAND-IN tokenizer that keeps every pixel's brightness and loses its colour."""

    def decode(self, tokens):
        return tokens.mean(1, keepdim=True).expand_as(tokens)


@pytest.fixture(autouse=True)
def user_cache(tmp_path, monkeypatch):
    """The fallback cache inside the test's folder: nothing lands in ~/.cache."""
    monkeypatch.setenv("VQSTACK_CACHE", str(tmp_path / "user-cache"))
    return tmp_path / "user-cache"


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    return write_faces(tmp_path_factory.mktemp("faces") / "faces")


@pytest.fixture
def trainings(monkeypatch):
    """Counts classifier trainings."""
    calls = []
    train = attributes.train_classifier

    def counting(*args, **kwargs):
        calls.append(1)
        return train(*args, **kwargs)

    monkeypatch.setattr(attributes, "train_classifier", counting)
    return calls


# --- colour-hist ------------------------------------------------------------------------------------------------


def colour_hist(fake, real) -> float:
    metric = ColourHistogramDistance()
    metric.update(fake, real)
    return float(metric.compute())


def flat(rgb, n=2, size=8) -> torch.Tensor:
    """``n`` images of one colour, ``rgb`` in [-1, 1]."""
    return torch.tensor(rgb, dtype=torch.float32)[None, :, None, None].expand(n, 3, size, size).clone()


def photos(n=4, size=16, seed=0) -> torch.Tensor:
    """Smooth random colour images in [-0.9, 0.9]."""
    low = torch.rand(n, 3, 4, 4, generator=torch.Generator().manual_seed(seed)) * 1.8 - 0.9
    return nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)


def test_colour_hist_is_zero_for_identical_images_and_one_for_disjoint_colours():
    images = photos()
    assert colour_hist(images, images) == pytest.approx(0.0, abs=1e-6)
    assert colour_hist(flat([1, -1, -1]), flat([-1, -1, 1])) == pytest.approx(1.0)  # all red vs all blue


def test_colour_hist_sees_a_hue_shift_more_than_noise():
    """Rotating the channels (red -> green -> blue) keeps every pixel's brightness and structure, so PSNR barely
    separates it from noise; the histogram distance does."""
    images = photos(8)
    noisy = (images + 0.02 * torch.randn(images.shape, generator=torch.Generator().manual_seed(1))).clamp(-1, 1)
    shifted = images.roll(1, dims=1)
    assert colour_hist(shifted, images) > 2 * colour_hist(noisy, images)
    assert colour_hist(shifted, images) > 0.5


def test_colour_hist_averages_over_images_and_is_a_suite_pair_metric():
    """One identical pair (0) and one disjoint pair (1) average to 0.5; 'color-hist' is the same metric."""
    assert [r.key for r in parse_metrics("color-hist,colour-hist")] == ["colour-hist"]
    suite = build_suite(["color-hist"])
    suite.update_pairs(flat([1, -1, -1], n=1), flat([1, -1, -1], n=1))
    suite.update_pairs(flat([1, -1, -1], n=1), flat([-1, 1, -1], n=1))
    assert suite.compute() == {"colour-hist": pytest.approx(0.5)}


# --- the tags and their split ---------------------------------------------------------------------------------


def test_split_holds_out_tagged_images_of_every_class_and_never_trains_on_them(faces):
    dataset = load_image_dataset(str(faces))
    tags = column_tags(dataset, "hair")
    assert tags.classes == ("blue", "green", "red")
    assert not set(tags.train) & set(tags.held_out)
    assert all(tags.labels[row] >= 0 for row in (*tags.train, *tags.held_out))  # null tags are ignored
    assert len(tags.train) + len(tags.held_out) == 90
    assert sorted(tags.labels[row] for row in tags.held_out) == [0] * 6 + [1] * 6 + [2] * 6
    assert column_tags(dataset, "hair") == tags  # a fixed split


@pytest.mark.parametrize("column,message", [
    ("hiar", "no tag column 'hiar'; its columns: hair, mood. Did you mean 'hair'?"),
    ("mood", "needs at least 2 classes in column 'mood'; its tags have 1 (calm). Tag columns: hair, mood."),
])
def test_a_column_that_cannot_be_learnt_fails_naming_the_columns(faces, column, message):
    with pytest.raises(DataError) as err:
        column_tags(load_image_dataset(str(faces)), column)
    assert message in str(err.value) and "\n" not in str(err.value)


# --- attribute fidelity ---------------------------------------------------------------------------------------


def test_recon_accuracy_drops_when_colour_is_lost_and_not_when_it_is_kept(faces, tmp_path, trainings):
    kept = attribute_fidelity(Identity(), str(faces), "hair", resolution=16, cache_dir=tmp_path)
    lost = attribute_fidelity(Grey(), str(faces), "hair", resolution=16, cache_dir=tmp_path)
    assert len(trainings) == 1  # the second call reuses the first's classifier
    assert kept.values["attr:hair/real"] >= 0.9 and kept.classifier["held_out_accuracy"] >= 0.9
    assert kept.values["attr:hair/recon"] == kept.values["attr:hair/real"]
    assert kept.values["attr:hair/worst-ratio"] == pytest.approx(1.0)
    assert lost.values["attr:hair/real"] == kept.values["attr:hair/real"]  # the same held-out originals
    assert lost.values["attr:hair/recon"] <= 0.5 and lost.values["attr:hair/worst-ratio"] == 0.0
    rows = lost.per_class
    assert set(rows) == set(HAIR) and all(row["count"] == 6 for row in rows.values())
    assert sum(row["recon"] == 0 for row in rows.values()) >= 2  # grey hair is one colour at most
    assert all(row["ratio"] == pytest.approx(row["recon"] / row["real"], abs=1e-3) for row in rows.values())
    balanced = sum(row["recon"] for row in rows.values()) / len(rows)  # every class counts the same
    assert lost.values["attr:hair/recon-balanced"] == pytest.approx(balanced, abs=1e-3)
    assert "recon mistaken for" in lost.table()


def test_the_classifier_is_cached_in_the_user_cache_and_reused(faces, user_cache, trainings):
    first = attribute_fidelity(Identity(), str(faces), "hair", resolution=16)
    folder = Path(first.classifier["path"])
    assert folder.parent == user_cache / "attributes" and folder.name.startswith("attr-hair-")
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    again = attribute_fidelity(Identity(), str(faces), "hair", resolution=16)
    assert len(trainings) == 1 and (folder / "model.safetensors").stat().st_mtime_ns == stamp
    assert again.classifier["trained_now"] is False and again.classifier["path"] == str(folder)
    record = json.loads((folder / "record.json").read_text())
    assert record["key"]["resolution"] == 16 and record["key"]["split_seed"] == 0
    assert record["key"]["metadata_sha256"] and record["key"]["data"] == str(faces.resolve())
    assert record["key"]["dataset_fingerprint"]
    assert record["held_out_accuracy"] == again.classifier["held_out_accuracy"]
    other = attribute_fidelity(Identity(), str(faces), "hair", resolution=8)  # another key: its own folder
    assert len(trainings) == 2 and Path(other.classifier["path"]).parent == folder.parent
    assert Path(other.classifier["path"]) != folder and (folder / "model.safetensors").is_file()
    attribute_fidelity(Identity(), str(faces), "hair", resolution=16)
    assert len(trainings) == 2  # the first is still there


def test_the_cache_root_follows_vqstack_cache_then_xdg_then_home(monkeypatch, tmp_path):
    monkeypatch.setenv("VQSTACK_CACHE", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert attributes.user_cache() == tmp_path / "mine"
    monkeypatch.delenv("VQSTACK_CACHE")
    assert attributes.user_cache() == tmp_path / "xdg" / "vqstack"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert attributes.user_cache() == tmp_path / "home" / ".cache" / "vqstack"


def test_cache_dir_replaces_the_cache_root(faces, tmp_path, user_cache):
    report = attribute_fidelity(Identity(), str(faces), "hair", resolution=16, cache_dir=tmp_path / "root")
    assert Path(report.classifier["path"]).parent == tmp_path / "root" / "attributes"
    assert not user_cache.exists()


def test_changed_tags_retrain_the_classifier(tmp_path, trainings):
    faces = write_faces(tmp_path / "faces")
    first = attribute_fidelity(Identity(), str(faces), "hair", resolution=16, cache_dir=tmp_path)
    metadata = faces / "metadata.jsonl"
    metadata.write_text(metadata.read_text().replace('"hair": "red"', '"hair": "blue"', 1))
    retrained = attribute_fidelity(Identity(), str(faces), "hair", resolution=16, cache_dir=tmp_path)
    assert len(trainings) == 2 and retrained.classifier["trained_now"]
    assert retrained.classifier["path"] != first.classifier["path"]


def test_a_folder_whose_record_differs_is_retrained_with_a_warning(faces, user_cache, trainings):
    """A record that does not match its folder's key (copied by hand, edited) is not trusted."""
    folder = Path(attribute_fidelity(Identity(), str(faces), "hair", resolution=16).classifier["path"])
    record = json.loads((folder / "record.json").read_text())
    record["key"]["resolution"] = 8
    (folder / "record.json").write_text(json.dumps(record))
    with pytest.warns(UserWarning, match="trained with another resolution; training a new one"):
        again = attribute_fidelity(Identity(), str(faces), "hair", resolution=16)
    assert len(trainings) == 2 and again.classifier["path"] == str(folder)
    assert json.loads((folder / "record.json").read_text())["key"]["resolution"] == 16


def test_an_unwritable_cache_warns_and_still_evaluates(faces, user_cache, trainings, monkeypatch):
    """The cache refuses writes (a read-only home): the evaluation runs on the classifier in memory."""
    def refuse(self, directory):
        raise PermissionError(13, "Permission denied", str(directory))

    monkeypatch.setattr(attributes.AttributeClassifier, "save", refuse)
    with pytest.warns(UserWarning, match=r"cannot cache the classifier in .*Permission denied.*VQSTACK_CACHE"):
        report = attribute_fidelity(Identity(), str(faces), "hair", resolution=16)
    assert report.classifier["path"] is None and report.values["attr:hair/real"] >= 0.9
    assert "classifier: not cached (trained now" in report.table()


def test_training_is_deterministic_and_leaves_the_global_rng_alone(faces, tmp_path):
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    one = attribute_fidelity(Identity(), str(faces), "hair", resolution=16, cache_dir=tmp_path / "a")
    after = torch.rand(3)
    two = attribute_fidelity(Identity(), str(faces), "hair", resolution=16, cache_dir=tmp_path / "b")
    assert torch.equal(before, after)
    weights = [attributes.AttributeClassifier.load(Path(r.classifier["path"])).state_dict() for r in (one, two)]
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])


def test_evaluate_tokenizer_takes_attr_metrics_with_data(faces, tmp_path, trainings):
    """A random tiny tokenizer (16x16, from its config): the attr numbers join the suite's under their own names."""
    torch.manual_seed(0)
    tokenizer = vqstack.Tokenizer.from_config(tiny_tokenizer_config()).eval()
    images = torch.rand(4, 3, 16, 16) * 2 - 1
    values = evaluate_tokenizer(tokenizer, [images], ["colour-hist", "attr:hair", "usage"], data=str(faces),
                                cache_dir=tmp_path)
    assert set(values) == {"colour-hist", "usage", "perplexity", "attr:hair/real", "attr:hair/recon",
                           "attr:hair/real-balanced", "attr:hair/recon-balanced", "attr:hair/worst-ratio"}
    assert 0 < values["colour-hist"] <= 1 and values["attr:hair/real"] >= 0.9
    assert len(trainings) == 1 and Path(tmp_path / "attributes").is_dir()
    with pytest.raises(ValueError, match=r"attr:hair scores a tagged data set: pass data="):
        evaluate_tokenizer(Grey(), [images], ["attr:hair"])
    with pytest.raises(ValueError, match="not a suite's batches"):
        build_suite(["attr:hair"])


# --- vqstack eval ---------------------------------------------------------------------------------------------


@pytest.fixture
def tokenizer_dir(tmp_path):
    torch.manual_seed(0)
    vqstack.Tokenizer.from_config(tiny_tokenizer_config()).save_pretrained(tmp_path / "tokenizer")
    yield tmp_path / "tokenizer"
    reset_accelerate()  # the command's Accelerator must not leak into the next test


def snapshot(folder: Path) -> dict:
    """Every file under ``folder`` with its size and modification time."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def test_vqstack_eval_writes_attr_numbers_per_class_and_leaves_the_tokenizer_folder_alone(faces, tokenizer_dir,
                                                                                          tmp_path, user_cache,
                                                                                          capsys):
    out = tmp_path / "eval.json"
    before = snapshot(tokenizer_dir)
    command = ["eval", "--tokenizer", str(tokenizer_dir), "--data", str(faces), "--metrics",
               "psnr,color-hist,attr:hair", "--json", str(out)]
    assert cli_main(command) == 0
    record = json.loads(out.read_text())
    for key in ("psnr", "colour-hist", "attr:hair/real", "attr:hair/recon", "attr:hair/worst-ratio"):
        assert isinstance(record[key], float) and math.isfinite(record[key]), key
    assert set(record["attr:hair/per_class"]) == set(HAIR)
    assert set(record["attr:hair/per_class"]["red"]) == {"count", "share", "real", "recon", "ratio",
                                                         "recon_mistaken_for"}
    folder = Path(record["attr:hair/classifier"]["path"])
    assert folder.parent == user_cache / "attributes" and (folder / "model.safetensors").is_file()
    assert snapshot(tokenizer_dir) == before  # nothing written into the user's tokenizer
    table = capsys.readouterr().out
    assert "attr:hair/recon" in table and "recon mistaken for" in table and f"{folder} (trained now" in table
    assert cli_main(command) == 0  # a second run: the cached classifier
    again = json.loads(out.read_text())
    assert again["attr:hair/classifier"]["trained_now"] is False and again["attr:hair/classifier"]["path"] == str(folder)
    assert again["attr:hair/real"] == record["attr:hair/real"] and f"{folder} (cached;" in capsys.readouterr().out
    assert snapshot(tokenizer_dir) == before


@pytest.mark.parametrize("metric,message", [
    ("attr:hiar", "vqstack eval: error: attr:hiar: the data set has no tag column 'hiar'; its columns: hair, mood."),
    ("attr:", "vqstack eval: error: attr: needs a tag column of the data, e.g. attr:hair."),
])
def test_vqstack_eval_bad_column_exits_2_with_one_line(faces, tokenizer_dir, tmp_path, capsys, metric, message):
    out = tmp_path / "eval.json"
    assert cli_main(["eval", "--tokenizer", str(tokenizer_dir), "--data", str(faces), "--metrics",
                     f"psnr,{metric}", "--json", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1 and not out.exists()
    assert not os.path.exists(tokenizer_dir / "attr-hiar")
