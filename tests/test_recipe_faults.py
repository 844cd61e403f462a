"""Faults mid-run lose nothing: SIGTERM/SIGINT checkpoint and return, NaN/inf steps are skipped (several in a row
stop the run with the last good checkpoint kept), and a SIGKILLed ``accelerate launch`` resumes to the end."""
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

import vqstack
from helpers.recipes import ROOT, TINY_VQGAN as TINY, reset_accelerate, run_tiny_vqgan, write_image_folder
from vqstack.quantizers.vq import VectorQuantizer
from vqstack.training.checkpoints import complete_checkpoints
from vqstack.training.faults import TrainingDiverged
from vqstack.training.runtime import run_recipe

@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("images"), count=20)


run = run_tiny_vqgan


def logged_steps(output) -> list[dict]:
    records = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if "loss" in r]


class SignalAtStep:
    """Sends ``sig`` to this process at the end of ``step``, as a scheduler pre-empting the job would."""

    def __init__(self, sig, step):
        self.sig, self.step = sig, step

    @vqstack.hookimpl
    def vqstack_on_step_end(self, step, logs):
        if step == self.step:
            os.kill(os.getpid(), self.sig)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_checkpoints_and_returns(images, tmp_path, fresh_plugins, sig):
    before = signal.getsignal(sig)
    vqstack.register_plugin(SignalAtStep(sig, 2), name="signal")
    result = run(images, tmp_path, "--max-steps", 5)
    vqstack.unregister_plugin("signal")
    assert result["stopped_by"] == signal.Signals(sig).name and result["state"].step == 2
    assert [p.name for p in complete_checkpoints(tmp_path)] == ["checkpoint-2"]
    assert (tmp_path / "tokenizer" / "model.safetensors").is_file()
    assert signal.getsignal(sig) is before, "the recipe puts the previous handler back"
    resumed = run(images, tmp_path, "--max-steps", 4, "--resume", "latest")
    assert resumed["state"].step == 4 and resumed["stopped_by"] is None
    assert [r["step"] for r in logged_steps(tmp_path)] == [1, 2, 3, 4]


class NaNVQ(VectorQuantizer):
    """A vq quantizer whose loss is NaN on chosen training forwards (counted from 0): a diverging step."""

    forwards = 0
    poisoned: set[int] | range = set()

    def forward(self, z):
        out = super().forward(z)
        if self.training:
            call, NaNVQ.forwards = NaNVQ.forwards, NaNVQ.forwards + 1
            if call in NaNVQ.poisoned:
                out = dataclasses.replace(out, loss=out.loss * float("nan"))
        return out


class NaNPlugin:
    @vqstack.hookimpl
    def vqstack_register_quantizers(self, registry):
        registry.register("nan-vq", NaNVQ)


def nan_run(images, output, poisoned, *more):
    NaNVQ.forwards, NaNVQ.poisoned = 0, poisoned
    config = output.parent / f"{output.name}-config.json"
    config.write_text(json.dumps({"tokenizer": {"quantizer": {"name": "nan-vq",
                                                              "kwargs": {"dim": 8, "codebook_size": 32}}}}))
    return run(images, output, "--config", config, *more)


def test_a_nan_step_is_skipped_with_a_warning(images, tmp_path, fresh_plugins):
    vqstack.register_plugin(NaNPlugin(), name="nan")
    with pytest.warns(RuntimeWarning, match="step 2: the generator gradient norm is nan; the step is skipped"):
        result = nan_run(images, tmp_path / "run", {1}, "--max-steps", 4)
    assert result["state"].step == 4 and NaNVQ.forwards == 5, "the skipped batch does not count as a step"
    records = logged_steps(tmp_path / "run")
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert [r["skipped_steps"] for r in records] == [0, 1, 1, 1]
    weights = load_file(tmp_path / "run" / "tokenizer" / "model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values()), "no NaN reached the weights"


def test_nan_steps_in_a_row_stop_the_run_keeping_the_last_good_checkpoint(images, tmp_path, fresh_plugins):
    vqstack.register_plugin(NaNPlugin(), name="nan")
    with pytest.warns(RuntimeWarning), pytest.raises(TrainingDiverged, match="3 optimizer steps in a row"):
        nan_run(images, tmp_path / "run", range(2, 100), "--max-steps", 8, "--checkpoint-every", 1,
                "--max-bad-steps", 3)
    assert [p.name for p in complete_checkpoints(tmp_path / "run")] == ["checkpoint-1", "checkpoint-2"]
    weights = load_file(tmp_path / "run" / "checkpoint-2" / "model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_a_diverged_run_ends_in_one_line_and_exit_code_1(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["vqgan_anime.py"])

    def diverge():
        raise TrainingDiverged("3 optimizer steps in a row had NaN or infinite gradients")

    with pytest.raises(SystemExit) as exit_info:
        run_recipe(diverge)
    assert exit_info.value.code == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "vqgan_anime.py: stopped: 3 optimizer steps in a row had NaN or infinite gradients"]


def wait_for(predicate, process, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert process.poll() is None, f"the run ended early:\n{process.stdout.read()}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.slow
def test_killed_and_terminated_launches_resume_to_the_end(images, tmp_path):
    """SIGKILL to a real ``accelerate launch`` (its whole process group, as a scheduler kills a job) loses only
    the steps since the last checkpoint; SIGTERM to the training process checkpoints and exits 0; the third
    launch resumes to the end."""
    output = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [*TINY, "--data", str(images), "--output-dir", str(output), "--max-steps", "60",
               "--checkpoint-every", "2", "--checkpoints-to-keep", "2", "--resume", "latest"]
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1",
              "--num_cpu_threads_per_process", "1", str(ROOT / "recipes" / "vqgan_anime.py"), *command]

    killed = subprocess.Popen(launch, env=env, start_new_session=True, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: (output / "checkpoint-2" / "COMPLETE").is_file(), killed)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait(timeout=60)
    survived = complete_checkpoints(output)[-1]
    step = int(survived.name.split("-")[1])
    assert 2 <= step < 60

    # SIGTERM straight to the training process (no launcher in between, so its exit code is ours to see)
    terminated = subprocess.Popen([sys.executable, str(ROOT / "recipes" / "vqgan_anime.py"), *command], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: complete_checkpoints(output)[-1].name != survived.name, terminated)
    terminated.send_signal(signal.SIGTERM)
    out, _ = terminated.communicate(timeout=120)
    assert terminated.returncode == 0, out
    assert "SIGTERM: stopped after step" in out and "continue with --resume latest" in out
    stopped_at = int(out.split("SIGTERM: stopped after step ")[1].split(",")[0])
    assert complete_checkpoints(output)[-1].name == f"checkpoint-{stopped_at}"

    finished = subprocess.run(launch, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=600)
    assert finished.returncode == 0, finished.stdout
    assert complete_checkpoints(output)[-1].name == "checkpoint-60" and not list(output.glob("*.tmp"))
    assert [r["step"] for r in logged_steps(output)] == list(range(1, 61)), "every step logged once, in order"


def add_bad_files(folder) -> None:
    """A zero-byte PNG, text under a .jpg name and a truncated PNG, beside the good images."""
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.jpg").write_text("not an image")
    good = next(folder.glob("*.png")).read_bytes()
    (folder / "cut.png").write_bytes(good[: len(good) // 2])


def test_unreadable_images_are_skipped_and_reported(tmp_path, capsys):
    folder = write_image_folder(tmp_path / "images", count=20)
    add_bad_files(folder)
    result = run(folder, tmp_path / "run", "--max-steps", 8, "--num-workers", "1")  # a worker, as in real runs
    assert result["state"].step == 8
    last = logged_steps(tmp_path / "run")[-1]
    # 21 training rows (2 held out) in batches of 4: 5 per epoch, so the 8 steps read each bad row at most twice
    assert last["skipped_images"] >= 3 and {"skipped/empty", "skipped/not_an_image", "skipped/truncated"} <= set(last)
    assert last["skipped_images"] == last["skipped/empty"] + last["skipped/not_an_image"] + last["skipped/truncated"]
    assert "unreadable images so far:" in capsys.readouterr().out


def test_a_folder_with_nothing_readable_stops_before_training(tmp_path):
    from vqstack.training.runtime import UsageError

    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.png").write_bytes(b"")
        (folder / f"{i}.jpg").write_text("text")
    with pytest.raises(UsageError, match="None of the .* images in --data .* is readable") as error:
        run(folder, tmp_path / "run", "--max-steps", 2)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "run" / "checkpoint-2").exists()


def test_encoding_for_a_prior_leaves_unreadable_images_out_and_counts_them(tmp_path):
    """The prior's token set holds one row per readable image with that image's own labels, and says how many
    were left out and why."""
    from accelerate import Accelerator

    from helpers.recipes import tiny_tokenizer_config, write_tagged_folder
    from vqstack.data import ImageDataset, load_image_dataset
    from vqstack.data.tokens import encode_dataset

    folder = write_tagged_folder(tmp_path / "images", count=12)
    (folder / "004.png").write_bytes(b"")  # a tagged row that cannot be read
    data = (folder / "003.png").read_bytes()
    (folder / "007.png").write_bytes(data[: len(data) // 2])
    reset_accelerate()
    torch.manual_seed(0)
    tokenizer = vqstack.Tokenizer.from_config(tiny_tokenizer_config())
    images = load_image_dataset(str(folder))
    tokens, info = encode_dataset(tokenizer, images, tmp_path / "tokens", 16, Accelerator(), ["hair"], batch_size=5,
                                  source=str(folder))
    kept = [i for i in range(12) if i not in (4, 7)]
    assert len(tokens) == 10 and tokens["hair"] == [images["hair"][i] for i in kept]
    assert info["skipped_images"] == 2 and info["skipped/empty"] == 1 and info["skipped/truncated"] == 1
    readable = ImageDataset(images, 16, random_flip=False)
    assert tokens[4]["tokens"] == tokenizer.encode(readable.pixels(5)[None]).flatten().tolist()


def test_skip_counters_go_on_counting_after_a_resume(tmp_path, fresh_plugins):
    """Skipped NaN steps and unreadable images are checkpointed: a run stopped at step 4 and resumed to 8 logs the
    same counters as one run of 8 steps."""
    folder = write_image_folder(tmp_path / "images", count=20)
    add_bad_files(folder)
    vqstack.register_plugin(NaNPlugin(), name="nan")
    with pytest.warns(RuntimeWarning, match="the step is skipped"):
        nan_run(folder, tmp_path / "straight", {1}, "--max-steps", 8)
        nan_run(folder, tmp_path / "resumed", {1}, "--max-steps", 4, "--checkpoint-every", 4)
    NaNVQ.poisoned = set()
    run(folder, tmp_path / "resumed", "--config", tmp_path / "resumed-config.json", "--max-steps", 8,
        "--resume", "latest")
    straight, resumed = logged_steps(tmp_path / "straight"), logged_steps(tmp_path / "resumed")
    assert [r["step"] for r in resumed] == list(range(1, 9))
    assert [r["skipped_steps"] for r in resumed] == [r["skipped_steps"] for r in straight] == [0] + [1] * 7
    counts = [{k: v for k, v in r.items() if k.startswith("skipped")} for r in straight]
    assert counts[-1]["skipped_images"] > counts[3]["skipped_images"] > 0, "bad files are read in both halves"
    assert [{k: v for k, v in r.items() if k.startswith("skipped")} for r in resumed] == counts
