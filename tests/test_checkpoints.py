"""Checkpoint folders and metrics.jsonl survive a run killed at any moment."""
import json

from vqstack.training.checkpoints import COMPLETE, complete_checkpoints, remove_incomplete, resolve_resume
from vqstack.training.reporting import MetricsLog


def folder(path, complete=True):
    path.mkdir()
    if complete:
        (path / COMPLETE).write_text("1\n")
    return path


def test_resume_latest_skips_incomplete_and_staging_folders(tmp_path):
    folder(tmp_path / "checkpoint-2")
    folder(tmp_path / "checkpoint-10")
    folder(tmp_path / "checkpoint-12", complete=False)  # killed before COMPLETE
    folder(tmp_path / "checkpoint-14.tmp")  # killed before the rename
    assert [p.name for p in complete_checkpoints(tmp_path)] == ["checkpoint-2", "checkpoint-10"]
    assert resolve_resume("latest", tmp_path) == tmp_path / "checkpoint-10"
    assert remove_incomplete(tmp_path) == [tmp_path / "checkpoint-14.tmp"]
    assert not (tmp_path / "checkpoint-14.tmp").exists() and (tmp_path / "checkpoint-10").is_dir()


def test_a_resumed_log_drops_the_steps_it_will_run_again(tmp_path):
    path = tmp_path / "metrics.jsonl"
    records = [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 0.9}, {"step": 2, "eval/psnr": 20.0},
               {"step": 3, "loss": 0.8}, {"step": 4, "loss": 0.7}]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    log = MetricsLog(path, resumed_at=2)
    log.write({"step": 3, "loss": 0.75})
    assert [json.loads(line) for line in path.read_text().splitlines()] == records[:3] + [{"step": 3, "loss": 0.75}]


def test_a_fresh_or_non_main_log_is_left_alone(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 5, "loss": 1.0}\n')
    MetricsLog(path, resumed_at=None)
    MetricsLog(path, enabled=False, resumed_at=1)  # only the main process rewrites the log
    assert path.read_text() == '{"step": 5, "loss": 1.0}\n'
