"""--time-budget: durations, the planned length, schedules that follow it, and the recipe's behaviour at the edges
(a budget too short, --max-steps reached first, a resumed run keeping its plan)."""
import json

import pytest
import torch

import vqstack.training.loop as loop
from helpers.recipes import run_tiny_vqgan, write_image_folder
from vqstack.training.budget import Costs, fit_steps, parse_duration
from vqstack.training.runtime import UsageError
from vqstack.training.schedules import cosine_schedule

@pytest.mark.parametrize("text,seconds", [("30m", 1800), ("2h", 7200), ("1h30m", 5400), ("90s", 90), ("90", 90),
                                          ("1.5h", 5400), ("20min", 1200), (" 45 S ", 45)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "30x", "m30", "-5m", "0", "0s"])
def test_a_duration_that_is_none_is_refused_naming_the_forms(text):
    with pytest.raises(ValueError, match="30m, 2h, 1h30m, 90s|longer than 0"):
        parse_duration(text)


def test_the_plan_fits_steps_evaluations_and_checkpoints_into_the_budget():
    costs = Costs(step=0.5, evaluation=10.0, checkpoint=2.0)
    # 100 s budget, 20 s spent on 10 steps; the final eval + checkpoint take 12 s: 68 s left, and each further step
    # costs 0.5 + 10/20 + 2/50 = 1.04 s -> 65 more steps
    assert fit_steps(100, 20, 10, costs, eval_every=20, checkpoint_every=50, max_steps=1000) == 75
    assert fit_steps(100, 20, 10, costs, eval_every=20, checkpoint_every=50, max_steps=40) == 40  # the cap
    assert fit_steps(25, 20, 10, costs, eval_every=20, checkpoint_every=50, max_steps=1000) == 10  # no room


def test_a_schedule_follows_a_length_fixed_after_it_began():
    length = {"total": 100}
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = cosine_schedule(optimizer, lambda: length["total"], lambda: length["total"] // 10)
    length["total"] = 20  # planned: warm-up 2 steps, cosine to 0 at step 20
    rates = []
    for _ in range(21):
        rates.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert rates[:3] == [0.0, 0.5, 1.0] and rates[11] == pytest.approx(0.5) and rates[20] == pytest.approx(0.0)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("images"), count=20)


run = run_tiny_vqgan


def records(output) -> list[dict]:
    return [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]


def test_an_unparsable_budget_is_one_line(images, tmp_path):
    with pytest.raises(UsageError, match="--time-budget 'half an hour' is not a duration"):
        run(images, tmp_path, "--time-budget", "half an hour")


def test_max_steps_reached_first_ends_the_run(images, tmp_path):
    result = run(images, tmp_path, "--time-budget", "1h", "--max-steps", 12)
    assert result["state"].step == 12 and result["state"].planned_steps == 12
    plan = [r for r in records(tmp_path) if "planned_steps" in r]
    assert [r["step"] for r in plan] == [10] and plan[0]["step_seconds"] > 0


def test_a_budget_too_short_warns_saves_and_a_resume_keeps_the_plan(images, tmp_path):
    with pytest.warns(RuntimeWarning, match=r"leaves no time for more steps: one step takes [\d.]+ s"):
        result = run(images, tmp_path, "--time-budget", "1s", "--max-steps", 50)
    assert result["state"].step == result["state"].planned_steps == 10
    assert (tmp_path / "tokenizer" / "model.safetensors").is_file()
    assert any("eval/psnr" in r and r["step"] == 10 for r in records(tmp_path)), "it ends with an evaluation"
    resumed = run(images, tmp_path, "--max-steps", 50, "--resume", "latest")
    assert resumed["state"].step == 10, "the checkpoint holds the plan: nothing more to train"


def test_a_planned_run_rescales_warm_up_and_the_discriminators_start(images, tmp_path, monkeypatch):
    """Planned at 16 of --max-steps 32: the GAN written to start at 20 starts at 10, and the cosine ends at 16."""
    monkeypatch.setattr(loop, "fit_steps", lambda *args, **kwargs: 16)
    result = run(images, tmp_path, "--time-budget", "1h", "--max-steps", 32, "--disc-start", 20,
                 "--warmup-steps", 8)
    assert result["state"].step == 16
    steps = [r for r in records(tmp_path) if "loss" in r]
    assert [r["step"] for r in steps if "d_loss" in r] == list(range(11, 17)), "from optimizer step 10 on"
    assert steps[-1]["lr"] == pytest.approx(0.0, abs=1e-12) and steps[-1]["d_lr"] == pytest.approx(0.0, abs=1e-12)
    # warm-up 8 of 32 -> 4 of 16: the full rate is reached after step 4 (the plan came at step 10, so the first
    # ten steps ran on the provisional 32-step schedule)
    assert steps[11]["lr"] < steps[10]["lr"]


def test_steps_grown_slower_shorten_the_plan_and_the_run_still_ends_saved(images, tmp_path, monkeypatch):
    """Planned at 30 (step 10); at the log lines after it the refit on the recent steps' time says 45 (ignored: a
    plan only shortens), then 22: the run ends at 22 with its final checkpoint and evaluation."""
    fits = iter([30, 45, 22])
    monkeypatch.setattr(loop, "fit_steps", lambda *args, **kwargs: next(fits, 99))
    result = run(images, tmp_path, "--time-budget", "1h", "--max-steps", 40, "--log-every", 5)
    assert result["state"].step == result["state"].planned_steps == 22
    rows = records(tmp_path)
    plans = [(r["step"], r["planned_steps"], r.get("shortened", False)) for r in rows if "planned_steps" in r]
    assert plans == [(10, 30, False), (20, 22, True)]
    assert any("eval/psnr" in r and r["step"] == 22 for r in rows), "it ends with an evaluation"
    assert (tmp_path / "tokenizer" / "model.safetensors").is_file()
