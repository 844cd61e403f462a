"""What a run writes for people: metrics.jsonl lines and real-vs-reconstruction grids."""
from __future__ import annotations

import json
from pathlib import Path

import torch


def to_float_dict(logs: dict) -> dict:
    return {k: float(v) for k, v in logs.items()}


class MetricsLog:
    """Appends one JSON object per call to ``metrics.jsonl`` (main process only).

    ``resumed_at``: the step a resumed run continues from. Records of later steps, written by the run before it
    stopped, are dropped when the log is opened, so no step appears twice."""

    def __init__(self, path, enabled: bool = True, resumed_at: int | None = None):
        self.path = Path(path)
        self.enabled = enabled
        if enabled and resumed_at is not None and self.path.is_file():
            self.drop_after(resumed_at)

    def drop_after(self, step: int) -> None:
        lines = self.path.read_text().splitlines(keepends=True)
        kept = [line for line in lines if not line.strip() or json.loads(line).get("step", 0) <= step]
        if len(kept) != len(lines):
            staging = self.path.with_name(self.path.name + ".tmp")
            staging.write_text("".join(kept))
            staging.replace(self.path)  # atomic: a crash here leaves the old log whole

    def write(self, record: dict) -> None:
        if self.enabled:
            with self.path.open("a") as f:
                f.write(json.dumps({k: (round(v, 6) if isinstance(v, float) else v) for k, v in record.items()})
                        + "\n")


def save_comparison_grid(real: torch.Tensor, recon: torch.Tensor, path, columns: int = 8) -> Path:
    """Rows of real images, each followed by a row of their reconstructions; images in [-1, 1]."""
    from torchvision.utils import make_grid, save_image

    columns = min(columns, real.shape[0])
    rows = []
    for start in range(0, real.shape[0], columns):
        rows += [real[start:start + columns], recon[start:start + columns]]
    grid = make_grid(torch.cat(rows).float().clamp(-1, 1), nrow=columns, padding=2, normalize=True,
                     value_range=(-1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(grid, path)
    return path
