"""Two CPU processes (gloo) train the flagship recipe: every rank must end with the same codebook, generator and
discriminator weights, and use the same adaptive weight, although each rank sees different images."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.recipes import ROOT, write_image_folder

ACCELERATE = Path(sys.executable).with_name("accelerate")


@pytest.mark.slow
@pytest.mark.skipif(not ACCELERATE.exists() and shutil.which("accelerate") is None, reason="accelerate CLI missing")
def test_two_processes_stay_in_sync(tmp_path):
    images = write_image_folder(tmp_path / "images")
    config = tmp_path / "ema.json"
    # EMA codebook with k-means init and dead-code restarts: all three must be synchronised across processes
    config.write_text(json.dumps({"tokenizer": {"quantizer": {"name": "ema", "kwargs": {
        "dim": 16, "codebook_size": 64, "kmeans_init": True, "dead_code_threshold": 1.0}}}}))
    out = tmp_path / "run"
    command = [str(ACCELERATE if ACCELERATE.exists() else shutil.which("accelerate")), "launch", "--multi_gpu",
               "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               str(ROOT / "tests" / "helpers" / "dist_probe.py"), "--preset", "tiny", "--data", str(images),
               "--config", str(config), "--max-steps", "4", "--disc-start", "1", "--batch-size", "4",
               "--num-workers", "0", "--eval-every", "2", "--output-dir", str(out)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "sync.json").read_text())
    assert all(entry["processes"] == 2 for entry in report.values()), report
    assert report["rec_loss"]["max_diff"] > 0, "the ranks must have trained on different images"
    for name in ("codebook", "generator", "discriminator", "adaptive_weight"):
        assert report[name]["max_diff"] == 0, f"{name} differs across ranks: {report[name]}"
    # --eval-every 2 of 4 steps: two evaluations, on the main process only (not one per process)
    assert report["evaluations"]["per_process"] == [2, 0], report["evaluations"]
