"""`vqstack eval` end to end on tiny random (untrained) models: the JSON it writes, the errors users meet, and the
same values from two processes as from one."""
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import vqstack
from helpers.recipes import ROOT, reset_accelerate, tiny_tokenizer_config, write_image_folder, write_tagged_folder
from test_evaluation import MeanColour
from vqstack.cli import main as cli_main
from vqstack.core.serialization import weights_sha256
from vqstack.data.images import describe_source

ACCELERATE = Path(sys.executable).with_name("accelerate")
OFFLINE_METRICS = ["psnr", "ssim", "stlpips", "fd-vgg", "usage"]


@pytest.fixture(autouse=True)
def clean_accelerate():
    yield
    reset_accelerate()  # the command's Accelerator must not leak into the next test


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A random tiny tokenizer (16 -> 4x4 tokens, 32 codes) and 24x24 images; untrained, for the plumbing only."""
    root = tmp_path_factory.mktemp("eval")
    torch.manual_seed(0)
    vqstack.Tokenizer.from_config(tiny_tokenizer_config()).save_pretrained(root / "tokenizer")
    write_image_folder(root / "images", count=10, size=24)
    return root


def run_eval(workdir, out, *options):
    return cli_main(["eval", "--tokenizer", str(workdir / "tokenizer"), "--data", str(workdir / "images"),
                     "--json", str(out), *options])


def test_tokenizer_eval_writes_every_offline_metric_and_its_context(workdir, tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert run_eval(workdir, out, "--metrics", ",".join(OFFLINE_METRICS), "--resolution", "24", "--limit", "4") == 0
    record = json.loads(out.read_text())
    for name in [*OFFLINE_METRICS, "perplexity"]:
        assert isinstance(record[name], float) and math.isfinite(record[name]), name
    assert 0 < record["usage"] <= 1 and 1 <= record["perplexity"] <= 32
    assert record["images"] == 4 and record["resolution"] == 24
    assert record["data"] == describe_source(str(workdir / "images"))
    assert record["tokenizer"] == {"path": str((workdir / "tokenizer").resolve()),
                                   "sha256": weights_sha256(workdir / "tokenizer")}
    assert record["versions"]["torch"] and record["versions"]["torchmetrics"]
    assert record["networks"]["fd-vgg"].startswith("ST-LPIPS VGG16 (ImageNet")
    assert "ST-LPIPS" in record["networks"]["stlpips"]
    assert not {"lpips", "fid", "rfid"} & set(record)  # the offline metrics never pass for the standard ones
    table = capsys.readouterr().out
    assert "fd-vgg" in table and "not LPIPS or FID" in table


@pytest.mark.parametrize("metric,file,option", [("rfid", "weights-inception-2015-12-05-6726825d.pth", "--fid-weights"),
                                                ("lpips", "alexnet-owt-7be5be79.pth", "--lpips-weights")])
def test_missing_weights_exit_2_with_one_line_and_no_json(metric, file, option, workdir, tmp_path, monkeypatch,
                                                          capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))  # nothing can be found by accident
    out = tmp_path / "eval.json"
    assert run_eval(workdir, out, "--metrics", f"psnr,{metric}") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("vqstack eval: error: ") and file in err and option in err and "TORCH_HOME" in err
    assert not out.exists() and not list(tmp_path.glob("*.json*"))


@pytest.mark.parametrize("options,message", [
    (["--metrics", "gfid"], "measures a prior: pass --prior"),
    (["--metrics", "fid"], "Did you mean 'rfid'"),
    (["--metrics", "nll"], "measures a prior"),
    (["--features", "vgx"], "Registered features: inception, vgg16-stlpips"),
    (["--limit", "0"], "--limit must be a positive int"),
])
def test_user_mistakes_exit_2_naming_the_choices(options, message, workdir, tmp_path, capsys):
    assert run_eval(workdir, tmp_path / "eval.json", *options) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


@pytest.mark.slow
@pytest.mark.skipif(not ACCELERATE.exists() and shutil.which("accelerate") is None, reason="accelerate CLI missing")
def test_two_processes_give_the_same_json_as_one(workdir, tmp_path):
    """9 images over 2 CPU processes (gloo), batches of 3: uneven shards (3+2 and 3+1 images) against one
    process's 3+3+3."""
    options = ["--metrics", "psnr,ssim,stlpips,fd-vgg,usage,precision,recall", "--resolution", "24",
               "--batch-size", "3", "--limit", "9"]
    assert run_eval(workdir, tmp_path / "one.json", *options) == 0
    launcher = str(ACCELERATE if ACCELERATE.exists() else shutil.which("accelerate"))
    command = [launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "vqstack.cli", "eval",
               "--tokenizer", str(workdir / "tokenizer"), "--data", str(workdir / "images"),
               "--json", str(tmp_path / "two.json"), *options]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one, two = (json.loads((tmp_path / name).read_text()) for name in ("one.json", "two.json"))
    assert set(one) == set(two)
    for key, value in one.items():
        if isinstance(value, float):
            assert two[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
        else:
            assert two[key] == value, key


class MeanColourPlugin:
    """Registers a STAND-IN features network (each image's mean colour): fast, and not a real metric network."""

    @vqstack.hookimpl
    def vqstack_register_features(self, registry):
        registry.register("mean-colour", MeanColour)


def write_prior_stages(root: Path) -> Path:
    """Tiny untrained stages: a tokenizer, an attribute prior (its head starts at zero: every token has probability
    1/32) and a token dataset of 12 rows with hair tags, encoded from a tagged image folder."""
    from datasets import Dataset

    from vqstack.data.tokens import save_token_dataset

    torch.manual_seed(0)
    vqstack.Tokenizer.from_config(tiny_tokenizer_config()).save_pretrained(root / "tokenizer")
    vqstack.save_component(vqstack.build("prior", "ar", vocab_size=32, seq_len=16, dim=32, depth=1, heads=2,
                                         attributes={"hair": ["blonde", "blue", "red"]}), root / "prior")
    images = write_tagged_folder(root / "images", count=12)
    rows = {"tokens": torch.randint(0, 32, (12, 16)).tolist(), "hair": ["blue", "red", "blonde", None] * 3}
    save_token_dataset(Dataset.from_dict(rows), root / "tokens", (4, 4), 32, label_columns=["hair"],
                       **describe_source(str(images)))
    return root


def test_prior_eval_reports_distribution_metrics_and_the_token_nll(fresh_plugins, tmp_path, capsys):
    """--data a token dataset: samples are compared with the images it was encoded from, and its sequences'
    NLL under a prior that gives every token 1/32 is ln 32 (a known answer)."""
    vqstack.register_plugin(MeanColourPlugin(), name="test-mean-colour")
    root = write_prior_stages(tmp_path)
    out = tmp_path / "prior.json"
    assert cli_main(["eval", "--tokenizer", str(root / "tokenizer"), "--prior", str(root / "prior"),
                     "--data", str(root / "tokens"), "--features", "mean-colour",
                     "--metrics", "fd,precision,recall", "--num-samples", "6", "--batch-size", "3",
                     "--labels", "blue hair;red hair", "--seed", "1", "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["nll"] == pytest.approx(math.log(32), rel=1e-5)
    assert {"fd-mean-colour", "precision", "recall"} <= set(record) and record["fd-mean-colour"] >= 0
    assert record["samples"] == 6 and record["images"] == 12 and record["sequences"] == 12
    assert record["resolution"] == 16 and record["data"] == describe_source(str(root / "images"))
    assert record["prior"]["sha256"] == weights_sha256(root / "prior")
    assert record["sampling"]["labels"] == "blue hair;red hair" and record["sampling"]["seed"] == 1
    assert "STAND-IN" in record["networks"]["fd-mean-colour"]
