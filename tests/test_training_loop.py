"""The shared training loop's own parts: schedules counted in optimizer steps, and the state a checkpoint keeps."""
import pytest
import torch
from transformers import get_cosine_schedule_with_warmup

from vqstack.training.checkpoints import TrainState
from vqstack.training.schedules import cosine_schedule


def learning_rates(scheduler, steps: int) -> list[float]:
    rates = []
    for _ in range(steps):
        rates.append(scheduler.get_last_lr()[0])
        scheduler.optimizer.step()
        scheduler.step()
    return rates


def optimizer(lr: float = 1.0):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


@pytest.mark.parametrize("warmup", [0, 3])
def test_the_cosine_schedule_is_transformers_one(warmup):
    ours = learning_rates(cosine_schedule(optimizer(), total=12, warmup=warmup), 13)
    theirs = learning_rates(get_cosine_schedule_with_warmup(optimizer(), warmup, 12), 13)
    assert ours == pytest.approx(theirs, abs=1e-12)


def test_a_delayed_schedule_is_zero_then_spans_the_steps_after_its_start():
    rates = learning_rates(cosine_schedule(optimizer(), total=10, warmup=2, start=6), 11)
    assert rates[:6] == [0.0] * 6
    assert rates[6:] == pytest.approx(learning_rates(cosine_schedule(optimizer(), total=4, warmup=2), 5))


def test_train_state_round_trips_and_reads_checkpoints_older_than_its_counters():
    state = TrainState()
    state.step, state.skipped_steps, state.skipped_images = 7, 2, [1, 0, 3, 0, 0, 0]
    again = TrainState()
    again.load_state_dict(state.state_dict())
    assert vars(again) == vars(state)
    old = TrainState()
    old.load_state_dict({"step": 5, "epoch": 1, "batches_in_epoch": 2, "images_seen": 40})
    assert (old.step, old.skipped_steps, old.skipped_images) == (5, 0, [0] * 6)
