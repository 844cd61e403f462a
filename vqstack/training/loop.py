"""The training loop every recipe shares.

A recipe builds its data, models, optimizers and objective, then hands the loop three things: a ``step`` function
(one micro-batch: forward, backward, guarded optimizer steps), what to ``export`` after a checkpoint, and what to
``evaluate`` and ``sample``. :class:`Trainer` owns everything else, once for all recipes:

    trainer = Trainer(args, name="vqgan")              # accelerate, seed, output folder
    model, opt, loader = trainer.prepare(model, opt, loader)
    sched = trainer.schedule(opt)                      # warm-up + cosine over --max-steps, checkpointed
    trainer.begin(config, run_key={...})               # resume, trackers, metrics.jsonl, train-start hook
    trainer.fit(loader, step, models=[model], batch_size=..., schedulers={"lr": sched},
                export=..., evaluate=..., sample=...)

From accelerate it uses gradient accumulation (``accumulate``), ``save_state``/``load_state`` (models,
optimizers, registered schedulers and state, every process's RNG), ``skip_first_batches`` for the data position,
``reduce`` and its trackers (tensorboard). Written here, because accelerate has no such thing: skipping a step
whose gradients are not finite (:class:`~vqstack.training.faults.NonFiniteGuard`), stopping cleanly on SIGTERM
and SIGINT, atomic checkpoint folders with a completeness marker, a run key that refuses a resume on other
inputs, counters of skipped steps and unreadable images that survive a resume, and metrics.jsonl.

Order after each optimizer step: log, then (at ``--checkpoint-every``, the last step or a stop signal) checkpoint
and export, then (unless stopping) evaluate and sample. Evaluation and samples run on the main process only, on the
unwrapped models; the other processes go on to the next step and wait for it in the next collective.
"""
from __future__ import annotations

import argparse
import importlib.util
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
from tqdm.auto import tqdm

from ..core import hook
from ..data.images import SkipTally
from .checkpoints import RunKey, TrainState, load_resume, save_checkpoint
from .faults import GracefulStop, NonFiniteGuard
from .reporting import FloatView, MetricsLog, to_float_dict
from .budget import Costs, TimeBudget, fit_steps, parse_duration
from .runtime import UsageError, cpu_processes
from .schedules import cosine_schedule


def add_loop_arguments(p: argparse.ArgumentParser, *, output_dir: str, max_steps: int, warmup_steps: int,
                       eval_every: int, sample_every: int, num_workers: int) -> argparse.ArgumentParser:
    """The options every recipe takes for its loop; the defaults that differ between recipes are arguments."""
    p.add_argument("--output-dir", default=output_dir, help="where everything is written (default: %(default)s)")
    p.add_argument("--max-steps", type=int, default=max_steps,
                   help="optimizer steps; with --time-budget the most it may plan (default: %(default)s)")
    p.add_argument("--time-budget", default=None,
                   help="wall-clock budget (30m, 2h, 1h30m, 90s): the run times its first steps and plans as many "
                        "as fit, the final evaluation and checkpoint included; --warmup-steps and the "
                        "discriminator's start scale with the plan as fractions of --max-steps")
    p.add_argument("--warmup-steps", type=int, default=warmup_steps,
                   help="linear warm-up before cosine decay (default: %(default)s)")
    p.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step (default: 1)")
    p.add_argument("--max-grad-norm", type=float, default=1.0, help="gradient clipping, 0 = off (default: 1.0)")
    p.add_argument("--max-bad-steps", type=int, default=10,
                   help="NaN/inf gradient steps in a row (each skipped) that end the run (default: %(default)s)")
    p.add_argument("--mixed-precision", default="no", choices=["no", "bf16", "fp16"],
                   help="autocast dtype; quantizer distances and frozen tokenizers stay in fp32 (default: no)")
    p.add_argument("--checkpoint-every", type=int, default=1000,
                   help="steps between checkpoints (default: %(default)s)")
    p.add_argument("--checkpoints-to-keep", type=int, default=3, help="newest checkpoints kept (default: %(default)s)")
    p.add_argument("--eval-every", type=int, default=eval_every,
                   help="steps between evaluations (default: %(default)s)")
    p.add_argument("--sample-every", type=int, default=sample_every,
                   help="steps between sample grids (default: %(default)s)")
    p.add_argument("--log-every", type=int, default=10, help="steps between metrics.jsonl lines (default: %(default)s)")
    p.add_argument("--resume", default=None, help="'latest' or a checkpoint folder (default: start fresh)")
    p.add_argument("--seed", type=int, default=0, help="seed of weights, data order and augmentation (default: 0)")
    p.add_argument("--report-to", default="none", choices=["none", "tensorboard"], help="tracker (default: none)")
    p.add_argument("--num-workers", type=int, default=num_workers,
                   help="data loader workers per process (default: %(default)s)")
    return p


StepFn = Callable[[object], "tuple[bool, Mapping]"]


class Trainer:
    """One run of a recipe: the accelerator, where training stands, and the loop (see the module docstring)."""

    def __init__(self, args, name: str):
        if args.report_to == "tensorboard" and importlib.util.find_spec("tensorboard") is None:
            raise UsageError("--report-to tensorboard needs the tensorboard package: "
                             "pip install 'vqstack[tensorboard]'.")
        self.args, self.name = args, name
        self.output_dir = Path(args.output_dir)
        try:  # the clock starts before anything is loaded: the budget is the whole command's
            self.budget = TimeBudget(parse_duration(args.time_budget)) if args.time_budget else None
        except ValueError as err:
            raise UsageError(str(err)) from err
        self.accelerator = Accelerator(
            cpu=cpu_processes(),
            gradient_accumulation_steps=args.grad_accum,
            mixed_precision=args.mixed_precision,
            log_with=None if args.report_to == "none" else args.report_to,
            project_config=ProjectConfiguration(project_dir=str(self.output_dir),
                                                logging_dir=str(self.output_dir / "logs")),
            # shuffling from (seed, epoch): the same order on resume, and every process agrees on it
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=args.seed),
        )
        set_seed(args.seed)  # identical initial weights on every process
        if self.accelerator.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        self.state = TrainState()
        self.guard = NonFiniteGuard(args.max_bad_steps)
        self.tally = SkipTally()  # unreadable images this process skipped in this run
        self.skips_before = SkipTally()  # every process's, in the runs this one resumes
        self.skips_reported = 0
        self.metrics_log: MetricsLog | None = None
        self.resumed_from: Path | None = None
        self.last_logs: dict = {}
        self.stopped_by: str | None = None
        self.on_plan: list[Callable[[], None]] = []  # called when a time budget fixes (or shortens) the run's length
        self.plan_costs: Costs | None = None  # what this process measured when it planned (None: it did not plan)

    # --- set-up --------------------------------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def is_main_process(self) -> bool:
        return self.accelerator.is_main_process

    def prepare(self, *objects):
        return self.accelerator.prepare(*objects)

    def register(self, *objects) -> None:
        """Objects with ``state_dict``/``load_state_dict`` saved in every checkpoint (EMA weights, LeCam)."""
        self.accelerator.register_for_checkpointing(*objects)

    @property
    def total_steps(self) -> int:
        """The run's length: ``--max-steps``, or what a ``--time-budget`` run planned once it has measured."""
        return self.state.planned_steps or self.args.max_steps

    def at(self, steps: int) -> int:
        """A step count written for ``--max-steps`` steps, rescaled to the run's length (the same without a plan)."""
        return round(steps * self.total_steps / self.args.max_steps) if self.state.planned_steps else steps

    def schedule(self, optimizer, start: int = 0) -> torch.optim.lr_scheduler.LambdaLR:
        """Warm-up (``--warmup-steps``) then cosine to the run's end, from optimizer step ``start`` on (both rescaled
        when a time budget plans the length); stepped by the loop once per optimizer step (accelerate's wrapper
        would step it once per process) and checkpointed."""
        scheduler = cosine_schedule(optimizer, lambda: self.total_steps, lambda: self.at(self.args.warmup_steps),
                                    lambda: self.at(start))
        self.register(scheduler)
        return scheduler

    def begin(self, config: dict, run_key: dict | None = None, mismatch: str = "") -> Path | None:
        """Resume (``--resume``), start trackers, open metrics.jsonl and call the train-start hook; returns the
        checkpoint resumed from. ``run_key`` records what the run trains on; a checkpoint of another key is refused
        with ``mismatch`` (``{checkpoint}`` names it). Build everything that draws random numbers before this: the
        RNG state loaded here must be the last word."""
        self.register(self.state)
        key = RunKey(run_key) if run_key is not None else None
        if key is not None:
            self.register(key)
        self.resumed_from = load_resume(self.accelerator, self.args.resume, self.output_dir)
        if self.resumed_from is not None:
            if key is not None and key.loaded != key.key:
                raise UsageError(mismatch.format(checkpoint=self.resumed_from))
            self.accelerator.print(f"resumed from {self.resumed_from} at step {self.state.step}")
        self.guard.skipped = self.state.skipped_steps
        self.skips_before = SkipTally(torch.tensor(self.state.skipped_images, dtype=torch.long))
        if self.args.report_to != "none":
            self.accelerator.init_trackers(self.name, config={k: v for k, v in config.items()
                                                             if isinstance(v, (int, float, str, bool))})
        self.metrics_log = MetricsLog(self.output_dir / "metrics.jsonl", enabled=self.is_main_process,
                                      resumed_at=self.state.step if self.resumed_from is not None else None)
        hook().vqstack_on_train_start(config=config, accelerator=self.accelerator)
        return self.resumed_from

    # --- inside a step -------------------------------------------------------------------------------------------

    def optimizer_step(self, optimizer, model, max_norm: float | None = None, what: str = "model") -> bool:
        """Clip and step unless the gradients are NaN/inf (then skipped, with a warning); call it inside ``step``
        after the backward. ``max_norm`` defaults to ``--max-grad-norm``; False when the step was skipped."""
        max_norm = self.args.max_grad_norm if max_norm is None else max_norm
        return self.guard.optimizer_step(self.accelerator, optimizer, model, max_norm, self.state.step, what)

    # --- the loop ------------------------------------------------------------------------------------------------

    def fit(self, dataloader, step: StepFn, *, models: Iterable[torch.nn.Module], batch_size: int,
            schedulers: Mapping[str, object] = (), epoch_datasets: Iterable = (),
            after_update: Callable[[], None] | None = None, export: Callable[[], None] | None = None,
            evaluate: Callable[[int], Mapping] | None = None, sample: Callable[[int], None] | None = None,
            postfix: Iterable[str] = ("loss",), throughput: str = "images_per_sec") -> None:
        """Train until ``--max-steps`` (or a stop signal). ``step(batch) -> (ok, logs)`` runs one micro-batch inside
        ``accelerator.accumulate(*models)``; ``ok`` is False when its optimizer step was skipped. ``schedulers``
        (log name -> scheduler) step once per optimizer step; ``after_update`` runs then too (an EMA of weights).
        ``epoch_datasets`` get ``set_epoch`` with the data loader (flips and damage drawn per epoch)."""
        args, accelerator, state = self.args, self.accelerator, self.state
        models, schedulers, epoch_datasets = list(models), dict(schedulers), list(epoch_datasets)
        stop = GracefulStop(accelerator, check_every=args.log_every)  # SIGTERM/SIGINT: checkpoint, then exit 0
        progress = tqdm(total=self.total_steps, initial=state.step, disable=not self.is_main_process, desc=self.name)
        meter = Throughput(batch_size * accelerator.num_processes * args.grad_accum)
        observers = hook().vqstack_on_step_end.get_hookimpls()
        if self.state.planned_steps:  # resumed after a time budget's plan: everything that follows it follows again
            for listener in self.on_plan:
                listener()
        try:
            with warnings.catch_warnings():
                # set once for the run, not per step: a delayed schedule (the discriminator's) steps before its
                # optimizer first does, which torch warns about although the order is right
                warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler")
                if self.budget is not None:
                    self.budget.resume_steps()
                while state.step < self.total_steps and not stop.stopped:
                    dataloader.set_epoch(state.epoch)
                    for dataset in epoch_datasets:
                        dataset.set_epoch(state.epoch)
                    for batch in accelerator.skip_first_batches(dataloader, state.batches_in_epoch):
                        if isinstance(batch, dict) and "skip_counts" in batch:
                            self.tally.add(batch)
                        state.batches_in_epoch += 1
                        with accelerator.accumulate(*models):
                            ok, logs = step(batch)
                        if not accelerator.sync_gradients:
                            continue
                        self.guard.step_done(ok, state.step)  # too many bad steps in a row: stop, saving nothing
                        if not ok:
                            continue
                        for scheduler in schedulers.values():
                            scheduler.step()
                        if after_update is not None:
                            after_update()
                        state.step += 1
                        state.images_seen += meter.per_step
                        meter.steps += 1
                        self.last_logs = dict(logs)
                        if observers:
                            hook().vqstack_on_step_end(step=state.step, logs=FloatView(logs))  # read on demand: no sync
                        progress.update(1)
                        if self.after_step(stop, progress, meter, schedulers, postfix, throughput,
                                           export, evaluate, sample):
                            break
                    else:  # the epoch ran out
                        state.epoch += 1
                        state.batches_in_epoch = 0
        finally:
            stop.close()
            progress.close()
            self.stopped_by = stop.signal_name

    def after_step(self, stop, progress, meter, schedulers, postfix, throughput, export, evaluate, sample) -> bool:
        """Log, checkpoint, evaluate and sample after an optimizer step; True when the loop ends here. The step that
        ends a time budget's calibration also checkpoints, evaluates and samples, timed, and plans the run."""
        args, step = self.args, self.state.step
        planning = self.budget is not None and not self.state.planned_steps and self.budget_step()
        if self.plan_costs is not None:  # this process planned the run: keep timing, and shorten it if slower
            self.budget.step_done()
            if step % args.log_every == 0:
                self.shorten_plan(progress)
        last = step == self.total_steps
        if step % args.log_every == 0 or last:
            record = self.log_record(schedulers, meter, throughput)
            progress.set_postfix({k: f"{record[k]:.4f}" for k in postfix if k in record})
        stopping = not last and stop.requested(step)
        costs = Costs(step=self.budget.step_seconds()) if planning else None
        if step % args.checkpoint_every == 0 or last or stopping or planning:
            started = time.perf_counter()
            path = self.checkpoint(export)
            if planning:
                costs.checkpoint = time.perf_counter() - started
            if stopping:
                self.accelerator.print(f"{stop.signal_name}: stopped after step {step}, saved {path.name}; "
                                       f"continue with --resume latest")
                return True
        started = time.perf_counter()
        if self.is_main_process:
            if evaluate is not None and (step % args.eval_every == 0 or last or planning):
                self.record_evaluation(step, evaluate(step))
            if sample is not None and (step % args.sample_every == 0 or last or planning):
                sample(step)
        if planning:
            costs.evaluation = time.perf_counter() - started
            last = self.plan(costs, progress)
        if self.budget is not None:
            self.budget.resume_steps()  # the next step's time leaves out this one's saving and evaluating
        return last

    def budget_step(self) -> bool:
        """Time this optimizer step; True once enough are timed to plan the run."""
        self.budget.step_done()
        return self.budget.calibrated() or self.state.step == self.args.max_steps

    def plan(self, costs: Costs, progress) -> bool:
        """Fix the run's length from the measured costs (decided on the main process, the same on every one), tell
        the ``on_plan`` listeners, and log it; True when the budget has no room for another step."""
        from accelerate.utils import broadcast_object_list

        args, step = self.args, self.state.step
        planned = [fit_steps(self.budget.seconds, self.budget.elapsed(), step, costs, args.eval_every,
                             args.checkpoint_every, args.max_steps)]
        broadcast_object_list(planned)  # every process's own clock differs: the main one decides
        self.plan_costs = costs
        self.set_plan(planned[0], progress)
        record = {"step": step, "planned_steps": planned[0], "step_seconds": costs.step,
                  "eval_seconds": costs.evaluation, "checkpoint_seconds": costs.checkpoint}
        self.metrics_log.write(record)
        self.accelerator.print(f"time budget {self.budget.seconds:.0f} s: {costs.step:.3f} s per step, "
                               f"{costs.evaluation:.1f} s per evaluation, {costs.checkpoint:.1f} s per checkpoint; "
                               f"planned {planned[0]} steps")
        if planned[0] > step:
            return False
        if step < args.max_steps:
            warnings.warn(f"--time-budget {args.time_budget} leaves no time for more steps: one step takes "
                          f"{costs.step:.3f} s, an evaluation and a checkpoint "
                          f"{costs.evaluation + costs.checkpoint:.1f} s, and {self.budget.elapsed():.0f} s are "
                          f"spent; the run ends at step {step}, saved.", RuntimeWarning, stacklevel=2)
            self.checkpoint(None)  # again, now holding the plan, so a resume does not train on
        return True

    def set_plan(self, steps: int, progress) -> None:
        self.state.planned_steps = steps
        for listener in self.on_plan:
            listener()
        progress.total = steps
        progress.refresh()

    def shorten_plan(self, progress) -> None:
        """Refit the plan to the latest steps' time (the measured evaluation and checkpoint costs kept); take it only
        when shorter. The main process decides, as for the plan itself."""
        from accelerate.utils import broadcast_object_list

        args, step = self.args, self.state.step
        costs = Costs(self.budget.recent_step_seconds(), self.plan_costs.evaluation, self.plan_costs.checkpoint)
        planned = [fit_steps(self.budget.seconds, self.budget.elapsed(), step, costs, args.eval_every,
                             args.checkpoint_every, args.max_steps)]
        broadcast_object_list(planned)
        planned[0] = max(planned[0], step)  # this step is done: at the soonest the run ends with it
        if planned[0] >= self.state.planned_steps:
            return
        self.set_plan(planned[0], progress)
        self.metrics_log.write({"step": step, "planned_steps": planned[0], "step_seconds": costs.step,
                                "shortened": True})

    def log_record(self, schedulers: Mapping, meter: Throughput, throughput: str) -> dict:
        """One metrics.jsonl line (and tracker entry): this step's logs averaged over the processes, learning
        rates, skip counters and throughput since the last line. Every process calls it (it reduces)."""
        accelerator = self.accelerator
        names = sorted(self.last_logs)
        values = accelerator.reduce(torch.stack([torch.as_tensor(self.last_logs[k], dtype=torch.float32,
                                                                  device=accelerator.device) for k in names]), "mean")
        record = dict(zip(names, values.tolist()))
        skips = self.skip_totals()
        if skips.total > self.skips_reported:  # a line in the log whenever the count grows
            accelerator.print(skips.message())
            self.skips_reported = skips.total
        record.update({name: scheduler.get_last_lr()[0] for name, scheduler in schedulers.items()})
        record.update(step=self.state.step, **skips.as_dict(), skipped_steps=self.guard.skipped,
                      **{throughput: meter.rate()})
        self.metrics_log.write(record)
        accelerator.log({k: v for k, v in record.items() if k != "step"}, step=self.state.step)
        return record

    def skip_totals(self) -> SkipTally:
        """Unreadable images skipped by every process since the run began (resumed runs included)."""
        counts = self.accelerator.reduce(self.tally.counts.to(self.device), "sum").cpu()
        return SkipTally(self.skips_before.counts + counts)

    def checkpoint(self, export: Callable[[], None] | None) -> Path:
        """checkpoint-<step>/ on every process, then ``export`` on the main one, then the checkpoint hook."""
        self.state.skipped_steps = self.guard.skipped
        self.state.skipped_images = self.skip_totals().counts.tolist()
        path = save_checkpoint(self.accelerator, self.output_dir, self.state.step, self.args.checkpoints_to_keep)
        if export is not None and self.is_main_process:
            export()
        hook().vqstack_on_checkpoint_saved(step=self.state.step, path=str(path))
        return path

    def record_evaluation(self, step: int, metrics: Mapping | None) -> None:
        if metrics:
            metrics = dict(metrics)
            self.metrics_log.write({"step": step, **metrics})
            self.accelerator.log(metrics, step=step)
            hook().vqstack_on_validation_end(step=step, metrics=metrics)

    def result(self, **extra) -> dict:
        """What a recipe's ``train`` returns: the accelerator, where training stands, the last step's logs as
        floats, the signal that stopped it (or None), and the recipe's own ``extra`` (models, config)."""
        return {"accelerator": self.accelerator, "state": self.state, "logs": to_float_dict(self.last_logs),
                "stopped_by": self.stopped_by, **extra}


class Throughput:
    """Items (images, sequences) per second since the last log line."""

    def __init__(self, per_step: int):
        self.per_step, self.steps, self.start = per_step, 0, time.perf_counter()

    def rate(self) -> float:
        now = time.perf_counter()
        value = self.steps * self.per_step / max(now - self.start, 1e-9)
        self.steps, self.start = 0, now
        return value
