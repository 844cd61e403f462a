"""The reference side of Fréchet distances and precision/recall (the real images' features), cached per data set,
rows, resolution and feature network: computed once, reused after, recomputed when any part of its key changes or
its files are damaged, and giving the values the uncached evaluation gives.

The feature network is a STAND-IN (a seeded random convolution, 8 features) that counts the images it sees; its
values are not a metric."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import vqstack
from helpers.recipes import ROOT, reset_accelerate, tiny_tokenizer_config, write_image_folder
from vqstack.cli import build_parser
from vqstack.cli import main as cli_main
from vqstack.data import ImageDataset, load_image_dataset
from vqstack.evaluation import FeatureNetwork, ReferenceFeatures, build_suite, reference_features
from vqstack.evaluation.generation import evaluate_samples
from vqstack.evaluation.reference import DISABLE_ENV, RECORD_NAME, TENSORS_NAME

NAME = "vgg16-stlpips"  # the stand-in poses as the fd-vgg network in suites built with networks=


class CountingFeatures(FeatureNetwork):
    """STAND-IN features: a seeded random 3x3 convolution to 8 channels, ReLU, global average pool. ``seen``
    (class-wide: the CLI builds its own instance) counts every image it is run on."""

    num_features = 8
    seen = 0

    def __init__(self, seed: int = 0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.conv = nn.Conv2d(3, 8, 3)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=generator))
            self.conv.bias.copy_(torch.randn(8, generator=generator))
        self.description = f"TEST STAND-IN: seeded random conv features (seed {seed}), not a metric network"
        self.freeze()

    def forward(self, images):
        type(self).seen += len(images)
        return self.conv(images.float()).relu().mean((2, 3))


class CountingPlugin:
    @vqstack.hookimpl
    def vqstack_register_features(self, registry):
        registry.register("counting", CountingFeatures)


@pytest.fixture
def data(tmp_path):
    return write_image_folder(tmp_path / "images", count=12, size=24)


@pytest.fixture(autouse=True)
def counted(monkeypatch):
    monkeypatch.delenv(DISABLE_ENV, raising=False)
    CountingFeatures.seen = 0
    yield
    reset_accelerate()  # a CLI run's Accelerator must not leak into the next test


def fake_images(n=8, size=16):
    low = torch.rand(n, 3, 4, 4, generator=torch.Generator().manual_seed(1)) * 2 - 1
    return nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)


def real_batches(data, resolution=16, limit=None):
    images = load_image_dataset(str(data))
    images = images.select(range(limit)) if limit else images
    return torch.utils.data.DataLoader(ImageDataset(images, resolution, random_flip=False), batch_size=5)


def cached(data, network, cache, **options):
    return reference_features(data, NAME, network=network, resolution=options.pop("resolution", 16),
                              cache_dir=cache, batch_size=5, **options)


def test_the_cache_is_written_once_reused_after_and_gives_the_uncached_values(data, tmp_path):
    network, metrics = CountingFeatures(), ["fd", "precision", "recall"]
    uncached = evaluate_samples([fake_images()], real_batches(data), metrics, networks={NAME: network})
    CountingFeatures.seen = 0

    first = cached(data, network, tmp_path / "cache")
    assert first.info["computed_now"] and CountingFeatures.seen == 12
    path = Path(first.info["path"])
    assert path.parent == tmp_path / "cache" / "fd-reference" and path.name.startswith(f"{NAME}-")
    assert {p.name for p in path.iterdir()} == {TENSORS_NAME, RECORD_NAME}
    second = cached(data, network, tmp_path / "cache")
    assert not second.info["computed_now"] and second.info["path"] == str(path)
    assert CountingFeatures.seen == 12  # the network ran on no real image the second time
    assert "reused" in second.describe() and "computed" in first.describe()

    # what is cached: float64 mean and covariance, the count and the features, as torchmetrics' FID sums them
    assert second.count == 12 and second.features.shape == (12, 8) and second.features.dtype == torch.float32
    assert second.mean.dtype == second.cov.dtype == torch.float64
    features = torch.cat([network(batch["pixel_values"]) for batch in real_batches(data)]).double()
    assert torch.allclose(second.mean, features.mean(0), rtol=1e-12)
    assert torch.allclose(second.cov, features.T.cov(), rtol=1e-9, atol=1e-12)
    assert torch.equal(second.features, first.features) and torch.equal(second.cov_sum, first.cov_sum)

    CountingFeatures.seen = 0
    values = evaluate_samples([fake_images()], second, metrics, networks={NAME: network})
    assert CountingFeatures.seen == 8  # the samples only
    assert values["fd-vgg"] == pytest.approx(uncached["fd-vgg"], rel=1e-6) and values["fd-vgg"] > 0
    assert values["precision"] == uncached["precision"] and values["recall"] == uncached["recall"]


def test_fid_from_the_cache_equals_torchmetrics_fid_fed_the_images(data, tmp_path):
    """gfid through the cache against torchmetrics' own FrechetInceptionDistance fed every image, on the
    random-weight InceptionV3 STAND-IN (75x75 inputs; not FID)."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    from vqstack.evaluation import InceptionFeatures

    torch.manual_seed(0)
    inception = InceptionFeatures(pretrained=False)
    plain = FrechetInceptionDistance(feature=inception)
    for batch in real_batches(data):
        plain.update(batch["pixel_values"], real=True)
    plain.update(fake_images(), real=False)
    reference = reference_features(data, "inception", network=inception, resolution=16, cache_dir=tmp_path)
    assert reference.features.shape == (12, 2048)
    reused = reference_features(data, "inception", network=inception, resolution=16, cache_dir=tmp_path)
    assert not reused.info["computed_now"]
    values = evaluate_samples([fake_images()], reused, ["gfid"], networks={"inception": inception})
    assert values["gfid"] == pytest.approx(float(plain.compute()), rel=1e-6)


def test_any_change_of_the_key_computes_anew(data, tmp_path):
    cache, network = tmp_path / "cache", CountingFeatures()
    base = cached(data, network, cache)
    paths = {base.info["path"]}
    for changed in [dict(resolution=24), dict(limit=6), dict(network=CountingFeatures(seed=1))]:
        options = {"network": network, **changed}
        reference = cached(data, options.pop("network"), cache, **options)
        assert reference.info["computed_now"], changed
        paths.add(reference.info["path"])
    assert len(paths) == 4 and not cached(data, network, cache).info["computed_now"]  # each kept beside the others
    assert cached(data, network, cache, limit=6).count == 6

    (data / "003.png").write_bytes((data / "000.png").read_bytes())  # an image file changed in place
    os.utime(data / "003.png", ns=(1_000_000_000, 1_000_000_000))
    changed = cached(data, network, cache)
    assert changed.info["computed_now"] and changed.info["path"] not in paths
    assert not torch.equal(changed.features, base.features)
    shutil.copy(data / "001.png", data / "100.png")  # a file added
    added = cached(data, network, cache)
    assert added.info["computed_now"] and added.count == 13

    CountingFeatures.seen = 0
    off = cached(data, network, tmp_path / "off", use_cache=False)
    assert off.info["computed_now"] and off.info["path"] is None and not (tmp_path / "off").exists()
    assert CountingFeatures.seen == 13


@pytest.mark.parametrize("damage", ["truncate features", "truncate record", "flip a byte", "other key"])
def test_a_damaged_cache_entry_is_computed_again(damage, data, tmp_path):
    network = CountingFeatures()
    first = cached(data, network, tmp_path / "cache")
    path = Path(first.info["path"])
    tensors, record = path / TENSORS_NAME, path / RECORD_NAME
    if damage == "truncate features":
        tensors.write_bytes(tensors.read_bytes()[: tensors.stat().st_size // 2])
    elif damage == "truncate record":
        record.write_text(record.read_text()[:40])
    elif damage == "flip a byte":
        raw = bytearray(tensors.read_bytes())
        raw[-5] ^= 0xFF
        tensors.write_bytes(bytes(raw))
    else:  # a folder copied by hand from another key
        edited = json.loads(record.read_text())
        edited["key"]["resolution"] = 32
        record.write_text(json.dumps(edited))
    CountingFeatures.seen = 0
    with pytest.warns(UserWarning, match="computing them again"):
        again = cached(data, network, tmp_path / "cache")
    assert again.info["computed_now"] and CountingFeatures.seen == 12 and again.info["path"] == str(path)
    assert torch.equal(again.cov_sum, first.cov_sum) and torch.equal(again.features, first.features)
    assert not cached(data, network, tmp_path / "cache").info["computed_now"]  # repaired


def test_a_reference_from_another_network_or_with_real_images_fed_too_is_refused(data, tmp_path):
    reference = cached(data, CountingFeatures(), tmp_path / "cache")
    suite = build_suite(["fd"], networks={NAME: CountingFeatures(seed=1)})
    with pytest.raises(ValueError, match="another network"):
        suite.use_reference(reference)
    suite = build_suite(["fd", "precision"], networks={NAME: CountingFeatures()})
    suite.use_reference(reference)
    suite.update_sets(fake_images(), real=True)  # skipped: their real side is the reference
    with pytest.raises(ValueError, match="fake images only"):
        suite.sets["fd-vgg"].update(fake_images(), real=True)
    with pytest.raises(ValueError, match="No reference features given for inception"):
        evaluate_samples([fake_images()], reference, ["fd", "fd-inception"],
                         networks={NAME: CountingFeatures(), "inception": CountingFeatures()})
    assert isinstance(reference, ReferenceFeatures)


# --- vqstack eval ---------------------------------------------------------------------------------------------------


def eval_args(root, *options):
    return ["eval", "--tokenizer", str(root / "tokenizer"), "--data", str(root / "images"), "--features", "counting",
            "--batch-size", "5", *options]


def test_vqstack_eval_reuses_the_reference_and_no_reference_cache_turns_it_off(fresh_plugins, tmp_path, capsys):
    """Tokenizer eval (real side = the originals) and prior eval (real side = the reference images): the second
    run's feature network sees only the reconstructions / samples; the values are those of an uncached run."""
    from vqstack.evaluation.command import run

    vqstack.register_plugin(CountingPlugin(), name="test-counting")
    torch.manual_seed(0)
    vqstack.Tokenizer.from_config(tiny_tokenizer_config()).save_pretrained(tmp_path / "tokenizer")
    vqstack.save_component(vqstack.build("prior", "ar", vocab_size=32, seq_len=16, dim=32, depth=1, heads=2),
                           tmp_path / "prior")
    write_image_folder(tmp_path / "images", count=10, size=24)
    fresh_plugins.setenv("VQSTACK_CACHE", str(tmp_path / "cache"))
    modes = {"tokenizer": ["--resolution", "16", "--metrics", "fd,precision,recall"],
             "prior": ["--prior", str(tmp_path / "prior"), "--metrics", "fd,precision,recall", "--num-samples", "6",
                       "--limit", "8"]}
    for mode, options in modes.items():
        seen, records = [], []
        for run_number in range(2):
            CountingFeatures.seen = 0
            out = tmp_path / f"{mode}-{run_number}.json"
            assert cli_main(eval_args(tmp_path, *options, "--json", str(out))) == 0
            seen.append(CountingFeatures.seen)
            records.append(json.loads(out.read_text()))
            printed = capsys.readouterr().out
            assert ("reused from" if run_number else "computed in") in printed, printed
        reals, fakes = (10, 10) if mode == "tokenizer" else (8, 6)
        assert seen == [reals + fakes, fakes], mode  # the second run read no real image's features
        assert records[0] == records[1]
        folder = Path(records[0]["reference_cache"]["counting"])
        assert folder.parent == tmp_path / "cache" / "fd-reference" and (folder / TENSORS_NAME).is_file()

        CountingFeatures.seen = 0
        args = build_parser().parse_args(eval_args(tmp_path, *options, "--json", str(tmp_path / "off.json")))
        args.reference_cache = False  # --no-reference-cache
        assert run(args) == 0
        off = json.loads((tmp_path / "off.json").read_text())
        assert CountingFeatures.seen == reals + fakes and "reference_cache" not in off
        assert "reference features" not in capsys.readouterr().out
        for name in ("fd-counting", "precision", "recall"):
            assert off[name] == pytest.approx(records[0][name], rel=1e-6), (mode, name)

    # the same images at the same size: a prior evaluation reuses what the tokenizer evaluation cached
    CountingFeatures.seen = 0
    assert cli_main(eval_args(tmp_path, *modes["prior"][:-2], "--json", str(tmp_path / "shared.json"))) == 0
    assert CountingFeatures.seen == 6 and "reused from" in capsys.readouterr().out


ACCELERATE = Path(sys.executable).with_name("accelerate")


@pytest.mark.slow
@pytest.mark.skipif(not ACCELERATE.exists(), reason="accelerate CLI missing")
def test_two_processes_build_the_same_cache_one_process_reuses(tmp_path, monkeypatch):
    """Under accelerate launch with 2 CPU processes (gloo) and an empty cache, each process computes the features
    of its shard (5 + 4 images); they are gathered and cached by the main process, and give the uncached value. Two
    processes, then one, reuse that cache entry (process 0 holds the sums, each process its share of the
    features)."""
    torch.manual_seed(0)
    vqstack.Tokenizer.from_config(tiny_tokenizer_config()).save_pretrained(tmp_path / "tokenizer")
    write_image_folder(tmp_path / "images", count=9, size=24)
    monkeypatch.setenv("VQSTACK_CACHE", str(tmp_path / "cache"))
    options = ["--tokenizer", str(tmp_path / "tokenizer"), "--data", str(tmp_path / "images"), "--resolution", "16",
               "--metrics", "fd-vgg,precision,recall", "--batch-size", "3"]
    monkeypatch.setenv(DISABLE_ENV, "1")
    assert cli_main(["eval", *options, "--json", str(tmp_path / "uncached.json")]) == 0
    monkeypatch.delenv(DISABLE_ENV)
    reset_accelerate()
    command = [str(ACCELERATE), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "vqstack.cli", "eval", *options,
               "--json", str(tmp_path / "two.json")]
    for run, said in [("two", "computed in"), ("two-reused", "reused from")]:
        command[-1] = str(tmp_path / f"{run}.json")
        proc = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert said in proc.stdout and proc.stdout.count("reference features") == 1, proc.stdout
    assert cli_main(["eval", *options, "--json", str(tmp_path / "reused.json")]) == 0
    uncached, *others = (json.loads((tmp_path / f"{n}.json").read_text())
                         for n in ("uncached", "two", "two-reused", "reused"))
    for name in ("fd-vgg", "precision", "recall"):
        for other in others:
            assert other[name] == pytest.approx(uncached[name], rel=1e-4), name
    assert others[0]["reference_cache"] == others[1]["reference_cache"] == others[2]["reference_cache"]
    assert len(list((tmp_path / "cache" / "fd-reference").iterdir())) == 1
