"""``--time-budget``: train for as many steps as fit in a wall-clock budget.

The run times its first optimizer steps (after a few untimed ones: worker start-up, first allocations), then one
evaluation, one sample grid and one checkpoint, and plans the number of steps that ends within the budget with
every periodic evaluation and checkpoint, and the final ones, included. Steps that grow slower later (the
discriminator's phase, a busier machine) shorten the plan at the next log line, refitted to the recent steps' time,
so the run still ends within the budget; a plan is never lengthened (a schedule already past a milestone would
move it back). The plan is saved with every checkpoint
(``TrainState.planned_steps``), so a resumed run keeps the last one. Step-valued options that shape the run (``--warmup-steps``,
the discriminator's start) are read as fractions of ``--max-steps`` and rescaled to the planned steps; ``--max-steps``
also caps the plan, so whichever of the two ends first ends the run.
"""
from __future__ import annotations

import math
import re
import statistics
import time
from dataclasses import dataclass

UNTIMED_STEPS = 2  # the first steps start workers and allocate: not typical of the run
TIMED_STEPS = 8  # the median of these is the step time the plan uses
RECENT_STEPS = 20  # the median of the latest these is the step time a shortened plan uses

_DURATION = re.compile(r"(?:(?P<h>\d+(?:\.\d*)?)h)?(?:(?P<m>\d+(?:\.\d*)?)m(?:in)?)?(?:(?P<s>\d+(?:\.\d*)?)s?)?")


def parse_duration(text: str) -> float:
    """``"30m"``, ``"2h"``, ``"1h30m"``, ``"90s"`` or ``"90"`` (seconds) -> seconds; a ``ValueError`` otherwise."""
    compact = str(text).strip().lower().replace(" ", "")
    match = _DURATION.fullmatch(compact)
    if not compact or match is None or not any(match.groupdict().values()):
        raise ValueError(f"--time-budget {text!r} is not a duration: use e.g. 30m, 2h, 1h30m, 90s or 90 (seconds).")
    parts = {unit: float(value) for unit, value in match.groupdict().items() if value}
    seconds = parts.get("h", 0) * 3600 + parts.get("m", 0) * 60 + parts.get("s", 0)
    if seconds <= 0:
        raise ValueError(f"--time-budget {text!r} must be longer than 0 seconds.")
    return seconds


@dataclass
class Costs:
    """Measured seconds of one optimizer step, one evaluation (with its sample grid) and one checkpoint."""
    step: float
    evaluation: float = 0.0
    checkpoint: float = 0.0


def fit_steps(budget: float, elapsed: float, done: int, costs: Costs, eval_every: int, checkpoint_every: int,
              max_steps: int) -> int:
    """The planned number of optimizer steps (at least ``done``, at most ``max_steps``): ``done`` steps took
    ``elapsed`` seconds; every further step costs ``costs.step`` plus its share of the periodic evaluations and
    checkpoints, and the run ends with one evaluation and one checkpoint more."""
    per_step = costs.step + costs.evaluation / max(1, eval_every) + costs.checkpoint / max(1, checkpoint_every)
    left = budget - elapsed - costs.evaluation - costs.checkpoint
    more = max(0, math.floor(left / per_step)) if per_step > 0 else max_steps
    return max(done, min(max_steps, done + more))


class TimeBudget:
    """The clock of a ``--time-budget`` run: started when the run is set up, so loading data and building models
    count; step times are taken between optimizer steps, leaving out the evaluations and checkpoints between."""

    def __init__(self, seconds: float, clock=time.perf_counter):
        self.seconds, self.clock = seconds, clock
        self.start = clock()
        self.step_times: list[float] = []
        self.mark = None  # when the current step began

    def elapsed(self) -> float:
        return self.clock() - self.start

    def resume_steps(self) -> None:
        """The next step's time starts now (call after anything that is not a step: an evaluation, a checkpoint)."""
        self.mark = self.clock()

    def step_done(self) -> None:
        now = self.clock()
        if self.mark is not None:
            self.step_times.append(now - self.mark)
        self.mark = now

    def calibrated(self) -> bool:
        return len(self.step_times) >= UNTIMED_STEPS + TIMED_STEPS

    def step_seconds(self) -> float:
        return statistics.median(self.step_times[UNTIMED_STEPS:] or self.step_times)

    def recent_step_seconds(self) -> float:
        """The median time of the latest ``RECENT_STEPS`` steps (the plan's own while fewer were timed since)."""
        return statistics.median(self.step_times[-RECENT_STEPS:])
