"""What a run writes for people: metrics.jsonl lines and real-vs-reconstruction grids."""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch


def to_float_dict(logs: Mapping) -> dict[str, float]:
    """``logs`` with every value a Python float: the one place a training loop reads its numbers back to the host.

    Values are floats, ints or 0-dim tensors (losses and quantizer metrics stay on the device during the step).
    The tensors are stacked per device and read in one transfer each, not one sync per value."""
    out, by_device = {}, {}
    for key, value in logs.items():
        if isinstance(value, torch.Tensor):
            by_device.setdefault(value.device, []).append((key, value))
        else:
            out[key] = float(value)
    for items in by_device.values():
        values = torch.stack([v.detach().reshape(()).float() for _, v in items]).tolist()
        out.update(zip((k for k, _ in items), values))
    return {key: out[key] for key in logs}  # the caller's order


class FloatView(Mapping):
    """A read-only snapshot of ``logs`` whose values read as Python floats, converted on first access.

    Hand it to per-step observers: an observer that reads nothing (a timer) costs no host sync, one that reads
    anything gets floats for all values in one transfer per device (:func:`to_float_dict`)."""

    def __init__(self, logs: Mapping):
        self._logs = dict(logs)  # the caller keeps updating its dict; this step's values stay
        self._floats: dict[str, float] | None = None

    def _read(self) -> dict[str, float]:
        if self._floats is None:
            self._floats = to_float_dict(self._logs)
        return self._floats

    def __getitem__(self, key: str) -> float:
        if key not in self._logs:
            raise KeyError(key)
        return self._read()[key]

    def __contains__(self, key) -> bool:  # Mapping's default would read the values
        return key in self._logs

    def __iter__(self):
        return iter(self._logs)

    def __len__(self) -> int:
        return len(self._logs)

    def __repr__(self) -> str:
        return f"FloatView({list(self._logs)})" if self._floats is None else f"FloatView({self._floats})"


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
