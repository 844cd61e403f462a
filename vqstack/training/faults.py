"""What a training loop does when something goes wrong mid-run: an operator or scheduler asks it to stop
(SIGTERM, SIGINT), or a step's gradients come out NaN or infinite."""
from __future__ import annotations

import signal
import threading
import warnings

import torch

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class TrainingDiverged(RuntimeError):
    """Too many non-finite steps in a row. ``run_recipe`` prints it as one line and exits with code 1."""


class GracefulStop:
    """SIGTERM / SIGINT set a flag instead of killing the process; the loop checks :meth:`requested` after each
    optimizer step, writes a checkpoint and returns normally (exit code 0), so a pre-empted job loses nothing.

    A second SIGINT (Ctrl-C pressed twice) stops at once, with the default behaviour. With several processes the
    flag is agreed on with an all-reduce every ``check_every`` steps, so every rank stops after the same step
    (a collective on some ranks only would hang)."""

    def __init__(self, accelerator, check_every: int = 1):
        self.accelerator = accelerator
        self.check_every = 1 if accelerator.num_processes == 1 else max(1, check_every)
        self.signal_name: str | None = None  # the signal this process received
        self.stopped = False  # set once every process agreed to stop
        self.previous = {}
        if threading.current_thread() is threading.main_thread():  # handlers can only be set there
            for sig in STOP_SIGNALS:
                self.previous[sig] = signal.signal(sig, self.handle)

    def handle(self, signum, frame) -> None:
        if self.signal_name is not None and signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name

    def requested(self, step: int) -> bool:
        """True when every process should stop after ``step``."""
        if self.accelerator.num_processes == 1:
            self.stopped = self.signal_name is not None
        elif step % self.check_every == 0:
            flag = torch.tensor([float(self.signal_name is not None)], device=self.accelerator.device)
            self.stopped = bool(self.accelerator.reduce(flag, "max").item())
            if self.stopped and self.signal_name is None:
                self.signal_name = "a signal to another process"
        return self.stopped

    def close(self) -> None:
        """Put the previous handlers back (a recipe run in-process, e.g. by a test, leaves no trace)."""
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous = {}


class NonFiniteGuard:
    """Decides whether an optimizer step may be taken: a step whose gradient norm is NaN or infinite is skipped
    (no update, schedulers and EMA untouched) with a warning, and ``patience`` such steps in a row raise
    :class:`TrainingDiverged`, before anything is saved, so the last good checkpoint stays the newest.

    The norms are those of the gradients after the processes' all-reduce, so every rank decides the same. This is
    one device-to-host copy per optimizer step, as in torch's GradScaler."""

    def __init__(self, patience: int):
        self.patience = patience
        self.in_a_row = 0
        self.skipped = 0

    def allows(self, norm: torch.Tensor, step: int, what: str) -> bool:
        if bool(torch.isfinite(norm)):
            return True
        self.skipped += 1
        warnings.warn(f"step {step + 1}: the {what} gradient norm is {float(norm)}; the step is skipped "
                      f"({self.skipped} skipped so far).", RuntimeWarning, stacklevel=2)
        return False

    def optimizer_step(self, accelerator, optimizer, model, max_norm: float, step: int, what: str) -> bool:
        """At the end of an accumulation cycle clip ``model``'s gradients and step ``optimizer`` unless they are NaN
        or infinite; False when the step was skipped. fp16's scaler still sees a skipped step, to lower its scale;
        the gradients are zeroed either way."""
        ok = True
        if accelerator.sync_gradients:
            ok = self.allows(gradient_norm(model.parameters(), max_norm, accelerator), step, what)
        if ok or accelerator.scaler is not None:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return ok

    def step_done(self, ok: bool, step: int) -> None:
        """Count a finished (``ok``) or skipped optimizer step; too many skipped in a row end the run."""
        self.in_a_row = 0 if ok else self.in_a_row + 1
        if self.in_a_row >= self.patience:
            raise TrainingDiverged(
                f"{self.in_a_row} optimizer steps in a row had NaN or infinite gradients (after step {step}); "
                f"training stopped without saving, so the newest checkpoint is the last good one. Lower --lr, "
                f"use --mixed-precision bf16 instead of fp16, or check the data; --max-bad-steps sets how many "
                f"are tolerated (now {self.patience}).")


def gradient_norm(parameters, max_norm: float, accelerator) -> torch.Tensor:
    """The total gradient norm, clipped to ``max_norm`` when it is > 0 (one computation either way)."""
    return accelerator.clip_grad_norm_(parameters, max_norm if max_norm > 0 else float("inf"))
