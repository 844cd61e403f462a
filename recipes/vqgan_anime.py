"""Train a VQGAN tokenizer on anime faces (or any images) with accelerate.

The same script runs on a laptop CPU, one GPU, several GPUs or several machines:

    # CPU or one GPU (smoke run on the local faces, seconds)
    accelerate launch recipes/vqgan_anime.py --data ../shared/data/anime-faces --preset tiny --max-steps 6 \
        --output-dir runs/tiny
    # the real thing: base preset, bf16 on a GPU
    accelerate launch recipes/vqgan_anime.py --data ../shared/data/anime-faces --preset base \
        --mixed-precision bf16 --output-dir runs/vqgan-anime
    # 2 processes on one machine (works on CPU too, over gloo), or N GPUs
    accelerate launch --multi_gpu --num_processes 2 recipes/vqgan_anime.py ...
    # several machines: run on each, with its --machine_rank
    accelerate launch --multi_gpu --num_machines 2 --machine_rank 0 --main_process_ip HOST --main_process_port 29500 \
        --num_processes 16 recipes/vqgan_anime.py ...
    # resume where the newest complete checkpoint left off
    accelerate launch recipes/vqgan_anime.py ... --resume latest

--data takes a Hub dataset id, an image folder (with metadata.jsonl tags when present), WebDataset shards
("dir/*.tar") or parquet files. Everything about the model comes from --preset, then --config (JSON or YAML with
any part of a preset, component names from the registry, so installed plugins work by name), then the options.

Writes to --output-dir: checkpoint-<step>/ (accelerate state: models, optimizers, schedulers, RNG, step, data
position), tokenizer/ (Tokenizer.save_pretrained), samples/step-<N>.png (real rows over reconstruction rows),
metrics.jsonl (one JSON object per logged step and per evaluation), and logs/ for --report-to tensorboard.
"""
from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

import vqstack
from vqstack.core import hook
from vqstack.core.files import publish_dir, staging_dir
from vqstack.data import ImageDataset, load_image_dataset
from vqstack.data.images import SkipTally, check_readable, hold_out
from vqstack.training.checkpoints import TrainState, load_resume, save_checkpoint
from vqstack.training.config import PRESETS, resolve_config
from vqstack.training.ema import weight_ema
from vqstack.training.faults import GracefulStop, NonFiniteGuard
from vqstack.training.objectives import LossWeights, VQGANObjective
from vqstack.training.runtime import cpu_processes, run_recipe, usage_errors
from vqstack.training.reporting import FloatView, MetricsLog, save_comparison_grid, to_float_dict

DEFAULT_DATA = "huggan/anime-faces"  # a public anime-faces dataset on the Hub


def build_parser(description: str = __doc__) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=DEFAULT_DATA, help="Hub id, image folder, 'dir/*.tar' shards or parquet files "
                                                        "(default: %(default)s)")
    p.add_argument("--output-dir", default="runs/vqgan-anime", help="where everything is written (default: %(default)s)")
    p.add_argument("--preset", default="base", choices=sorted(PRESETS), help="model and training sizes (default: base)")
    p.add_argument("--config", default=None, help="JSON/YAML file overriding any part of the preset")
    p.add_argument("--resolution", type=int, default=None, help="image size (default: the preset's, 32 tiny / 64 base)")
    p.add_argument("--batch-size", type=int, default=None, help="images per process per step (default: the preset's)")
    p.add_argument("--max-steps", type=int, default=20000, help="optimizer steps (default: %(default)s)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate of both networks (default: the preset's)")
    p.add_argument("--warmup-steps", type=int, default=0, help="linear warm-up before cosine decay (default: 0)")
    p.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step (default: 1)")
    p.add_argument("--max-grad-norm", type=float, default=1.0, help="gradient clipping, 0 = off (default: 1.0)")
    p.add_argument("--mixed-precision", default="no", choices=["no", "bf16", "fp16"],
                   help="autocast dtype; the quantizer always computes distances in fp32 (default: no)")
    p.add_argument("--quantizer", default=None, help="registered quantizer name; its kwargs come from --config")
    p.add_argument("--disc-start", type=int, default=None, help="step the discriminator starts (default: the preset's)")
    p.add_argument("--disc-weight", type=float, default=None, help="adversarial weight, 0 = no GAN (default: 0.1)")
    p.add_argument("--perceptual-weight", type=float, default=None, help="0 = no perceptual loss (default: the preset's)")
    p.add_argument("--perceptual-weights", default=None,
                   help="local backbone weights for the 'lpips' perceptual loss (no download offline)")
    p.add_argument("--max-bad-steps", type=int, default=10,
                   help="NaN/inf gradient steps in a row (each skipped) that end the run (default: %(default)s)")
    p.add_argument("--ema-decay", type=float, default=0.0, help="EMA of the tokenizer weights, 0 = off (default: 0)")
    p.add_argument("--checkpoint-every", type=int, default=1000, help="steps between checkpoints (default: %(default)s)")
    p.add_argument("--checkpoints-to-keep", type=int, default=3, help="newest checkpoints kept (default: %(default)s)")
    p.add_argument("--sample-every", type=int, default=500, help="steps between sample grids (default: %(default)s)")
    p.add_argument("--eval-every", type=int, default=1000, help="steps between evaluations (default: %(default)s)")
    p.add_argument("--log-every", type=int, default=10, help="steps between metrics.jsonl lines (default: %(default)s)")
    p.add_argument("--resume", default=None, help="'latest' or a checkpoint folder (default: start fresh)")
    p.add_argument("--seed", type=int, default=0, help="seed of weights, data order and flips (default: 0)")
    p.add_argument("--report-to", default="none", choices=["none", "tensorboard"], help="tracker (default: none)")
    p.add_argument("--num-workers", type=int, default=2, help="data loader workers per process (default: 2)")
    return p


def make_config(args) -> dict:
    config = resolve_config(args.preset, args.config, quantizer=args.quantizer, overrides={
        "resolution": args.resolution, "batch_size": args.batch_size, "lr": args.lr,
        "loss.disc_start": args.disc_start, "loss.adversarial": args.disc_weight,
        "loss.perceptual": args.perceptual_weight,
    })
    if args.perceptual_weights:
        name = config["perceptual"]["name"] if config["loss"]["perceptual"] > 0 else None
        if name != "lpips":  # only lpips loads a backbone file; stlpips ships its weights
            raise SystemExit(f"--perceptual-weights is for the 'lpips' perceptual loss, but this run's is "
                             f"{name or 'off (weight 0)'!r}. Drop --perceptual-weights, or choose lpips in --config: "
                             f'{{"perceptual": {{"name": "lpips", "kwargs": {{"net": "vgg"}}}}}}.')
        config["perceptual"].setdefault("kwargs", {})["backbone_weights"] = args.perceptual_weights
    return config


COLOUR_SAMPLE = 1024  # training images whose pixel colours set the whitening (the first ones: every process agrees)


def colour_statistics(train_set: ImageDataset) -> dict:
    """The tokenizer's colour whitening ({"mean", "matrix"}) from the first training images, center-cropped."""
    from vqstack.autoencoders.colour import ColourWhitening

    rows = range(min(COLOUR_SAMPLE, len(train_set)))
    images = torch.stack([train_set[i]["pixel_values"] for i in rows])  # flips do not change colours
    return ColourWhitening.from_images(images).config


EVAL_METRICS = ("psnr", "ssim", "stlpips", "usage")  # vqstack eval's names; stlpips with its own VGG16
STLPIPS_MIN_SIZE = 18  # the VGG16 ST-LPIPS needs images of at least this many pixels a side


def eval_suite(tokenizer, resolution: int):
    """The fixed held-out metrics, computed by vqstack.evaluation like ``vqstack eval`` (every process evaluates the
    same images, so nothing is summed across processes). ST-LPIPS uses its own frozen VGG16, whatever the loss
    uses, so the number means the same with any --perceptual-weight."""
    from vqstack.evaluation import tokenizer_suite

    metrics = [m for m in EVAL_METRICS if m != "stlpips" or resolution >= STLPIPS_MIN_SIZE]
    return tokenizer_suite(tokenizer, metrics, sync_on_compute=False)


@torch.no_grad()
def evaluate(tokenizer, images: torch.Tensor, suite, batch_size: int) -> dict:
    """Reconstruction quality on the held-out images, logged as eval/<name>."""
    from vqstack.evaluation import evaluate_tokenizer

    was_training = tokenizer.training
    suite.reset()
    values = evaluate_tokenizer(tokenizer, images.split(batch_size), suite)
    tokenizer.train(was_training)
    return {f"eval/{name}": value for name, value in values.items()}


def train(args) -> dict:
    output_dir = Path(args.output_dir)
    with usage_errors():  # a bad --config or option: one line, exit 2
        config = make_config(args)
    if args.report_to == "tensorboard" and importlib.util.find_spec("tensorboard") is None:
        raise SystemExit("--report-to tensorboard needs the tensorboard package: pip install 'vqstack[tensorboard]'.")
    accelerator = Accelerator(
        cpu=cpu_processes(),
        gradient_accumulation_steps=args.grad_accum,
        mixed_precision=args.mixed_precision,
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
        # shuffling from (seed, epoch): the same order on resume, and every process agrees on it
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=args.seed),
    )
    set_seed(args.seed)  # identical initial weights on every process
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)

    # --- data: the last eval_size readable images are held out for evaluation -----------------------------------
    with accelerator.main_process_first():  # the first process builds the datasets cache, the others reuse it
        images = load_image_dataset(args.data)
    with usage_errors():  # nothing readable: one line before training, not a traceback from a worker
        every_row = ImageDataset(images, config["resolution"], random_flip=False)
        check_readable(every_row, args.data)
        train_rows, eval_images = hold_out(every_row, min(config["eval_size"], max(1, len(images) // 10)))
        train_set = ImageDataset(images.select(train_rows), config["resolution"], seed=args.seed)
        check_readable(train_set, args.data)
    eval_images = eval_images.to(accelerator.device)
    # its own generator: making an iterator draws a worker seed, which must not move the global RNG (a resumed run
    # makes one more iterator than the run it continues, and would then draw other restarts and dropouts)
    dataloader = torch.utils.data.DataLoader(train_set, batch_size=config["batch_size"], shuffle=True,
                                             drop_last=True, num_workers=args.num_workers,
                                             generator=torch.Generator().manual_seed(args.seed))

    # --- models, losses, optimizers ------------------------------------------------------------------------------
    if config["tokenizer"].get("colour") == "whiten":  # measured here, stored in the tokenizer's config
        config["tokenizer"]["colour"] = colour_statistics(train_set)
    with usage_errors():  # misspelt component names, arguments a component does not take
        tokenizer = vqstack.Tokenizer.from_config(config["tokenizer"])
        weights = LossWeights(**config["loss"])
        use_gan = weights.adversarial > 0
        discriminator = vqstack.build("discriminator", config["discriminator"]["name"],
                                      **config["discriminator"].get("kwargs", {})) if use_gan else None
        perceptual = vqstack.build("perceptual", config["perceptual"]["name"],
                                   **config["perceptual"].get("kwargs", {})) if weights.perceptual > 0 else None
    if perceptual is not None:
        perceptual.to(accelerator.device)
    betas = (0.5, 0.9)  # taming's GAN-friendly Adam betas
    opt_g = torch.optim.Adam(tokenizer.parameters(), lr=config["lr"], betas=betas)
    # Schedules count optimizer steps; we step them ourselves (accelerate's wrapper would step once per process).
    sched_g = get_cosine_schedule_with_warmup(opt_g, args.warmup_steps, args.max_steps)
    models = [tokenizer]
    if use_gan:
        opt_d = torch.optim.Adam(discriminator.parameters(), lr=config["lr"], betas=betas)
        # stepped only from disc_start on: built for the steps the discriminator actually trains
        disc_steps = max(1, args.max_steps - weights.disc_start)
        sched_d = get_cosine_schedule_with_warmup(opt_d, min(args.warmup_steps, disc_steps), disc_steps)
        tokenizer, discriminator, opt_g, opt_d, dataloader = accelerator.prepare(
            tokenizer, discriminator, opt_g, opt_d, dataloader)
        models.append(discriminator)
        accelerator.register_for_checkpointing(sched_d)
    else:
        tokenizer, opt_g, dataloader = accelerator.prepare(tokenizer, opt_g, dataloader)
    models[0] = tokenizer
    raw_tokenizer = accelerator.unwrap_model(tokenizer)
    objective = VQGANObjective(weights, perceptual, discriminator,
                               accelerator.unwrap_model(discriminator) if use_gan else None, raw_tokenizer.colour)
    state = TrainState()
    accelerator.register_for_checkpointing(state, sched_g)
    if objective.lecam is not None:
        objective.lecam.to(accelerator.device)
        accelerator.register_for_checkpointing(objective.lecam)
    ema = None
    if args.ema_decay > 0:
        ema = weight_ema(raw_tokenizer, args.ema_decay)
        accelerator.register_for_checkpointing(ema)

    # built before the resume: building draws random weights, and the RNG state loaded next must be the last word
    suite = eval_suite(raw_tokenizer, config["resolution"]).to(accelerator.device)
    resume_from = load_resume(accelerator, args.resume, output_dir)
    if resume_from is not None:
        accelerator.print(f"resumed from {resume_from} at step {state.step}")
    if args.report_to != "none":
        accelerator.init_trackers("vqgan", config={"preset": args.preset, "data": args.data, "lr": config["lr"]})
    metrics_log = MetricsLog(output_dir / "metrics.jsonl", enabled=accelerator.is_main_process,
                             resumed_at=state.step if resume_from is not None else None)
    hook().vqstack_on_train_start(config=config, accelerator=accelerator)
    observers = hook().vqstack_on_step_end.get_hookimpls()

    def export() -> None:
        """tokenizer/ (the EMA weights when kept), written by the main process into tokenizer.tmp and then renamed:
        an older tokenizer/ is replaced only by a complete new one."""
        if accelerator.is_main_process:
            staging = staging_dir(output_dir / "tokenizer")
            (ema.module if ema is not None else raw_tokenizer).save_pretrained(staging)
            publish_dir(staging, output_dir / "tokenizer")

    def evaluate_and_sample(step: int, do_eval: bool, do_sample: bool) -> None:
        model = ema.module if ema is not None else raw_tokenizer
        if do_sample and accelerator.is_main_process:
            with torch.no_grad():
                model.eval()
                recon = model(eval_images[:8]).recon
                model.train()
            save_comparison_grid(eval_images[:8].cpu(), recon.cpu(), output_dir / "samples" / f"step-{step}.png")
        if do_eval:  # every process evaluates the same small set: no collective can be left waiting
            metrics = evaluate(model, eval_images, suite, config["batch_size"])
            metrics_log.write({"step": step, **metrics})
            accelerator.log(metrics, step=step)
            hook().vqstack_on_validation_end(step=step, metrics=metrics)

    # --- the loop ------------------------------------------------------------------------------------------------
    progress = tqdm(total=args.max_steps, initial=state.step, disable=not accelerator.is_main_process,
                    desc="vqgan")
    images_per_step = config["batch_size"] * accelerator.num_processes * args.grad_accum
    interval_start, interval_steps = time.perf_counter(), 0
    tally, skips_reported = SkipTally(), 0  # unreadable images, per reason: this process's, summed at log time
    logs = {}
    stop = GracefulStop(accelerator, check_every=args.log_every)  # SIGTERM/SIGINT: checkpoint, then exit 0
    guard = NonFiniteGuard(args.max_bad_steps)  # NaN/inf gradients: skip the step
    try:
        while state.step < args.max_steps and not stop.stopped:
            dataloader.set_epoch(state.epoch)
            train_set.set_epoch(state.epoch)
            for batch in accelerator.skip_first_batches(dataloader, state.batches_in_epoch):
                images = batch["pixel_values"]
                tally.add(batch)
                state.batches_in_epoch += 1
                with accelerator.accumulate(*models):
                    # generator: one encoder/decoder forward, then its backward and step, before the discriminator's
                    out = tokenizer(images)
                    with accelerator.autocast():
                        loss, logs = objective.generator_loss(images, out, state.step,
                                                              raw_tokenizer.decoder.last_layer)
                    accelerator.backward(loss)
                    g_ok = guard.optimizer_step(accelerator, opt_g, tokenizer, args.max_grad_norm, state.step, "generator")
                    if objective.gan_active(state.step):
                        with accelerator.autocast():
                            d_loss, d_logs = objective.discriminator_loss(images, out.recon, state.step)
                        accelerator.backward(d_loss)
                        guard.optimizer_step(accelerator, opt_d, discriminator, 0.0, state.step, "discriminator")
                        logs.update(d_logs)
                if not accelerator.sync_gradients:
                    continue
                guard.step_done(g_ok, state.step)  # too many bad steps in a row: stop, keeping the last checkpoint
                if not g_ok:
                    continue

                # --- one optimizer step done ---
                sched_g.step()
                if objective.gan_active(state.step):
                    sched_d.step()
                if ema is not None:
                    ema.update_parameters(raw_tokenizer)
                state.step += 1
                state.images_seen += images_per_step
                interval_steps += 1
                logs.update(usage=out.metrics["usage"], perplexity=out.metrics["perplexity"])
                if observers:
                    hook().vqstack_on_step_end(step=state.step, logs=FloatView(logs))  # read on demand: no sync
                progress.update(1)

                if state.step % args.log_every == 0 or state.step == args.max_steps:
                    names = sorted(logs)
                    values = accelerator.reduce(torch.stack([torch.as_tensor(logs[k], dtype=torch.float32,
                                                                             device=accelerator.device)
                                                             for k in names]), "mean")
                    record = dict(zip(names, values.tolist()))
                    elapsed = time.perf_counter() - interval_start
                    skips = SkipTally(accelerator.reduce(tally.counts.to(accelerator.device), "sum"))
                    if skips.total > skips_reported:  # a line in the log whenever the count grows
                        accelerator.print(skips.message())
                        skips_reported = skips.total
                    record.update(step=state.step, lr=sched_g.get_last_lr()[0], **skips.as_dict(),
                                  skipped_steps=guard.skipped,
                                  images_per_sec=interval_steps * images_per_step / max(elapsed, 1e-9))
                    if use_gan:
                        record["d_lr"] = sched_d.get_last_lr()[0]
                    metrics_log.write(record)
                    accelerator.log({k: v for k, v in record.items() if k != "step"}, step=state.step)
                    progress.set_postfix(loss=f"{record['loss']:.4f}", usage=f"{record['usage']:.2f}")
                    interval_start, interval_steps = time.perf_counter(), 0

                last = state.step == args.max_steps
                stopping = not last and stop.requested(state.step)
                if state.step % args.checkpoint_every == 0 or last or stopping:
                    path = save_checkpoint(accelerator, output_dir, state.step, args.checkpoints_to_keep)
                    export()
                    hook().vqstack_on_checkpoint_saved(step=state.step, path=str(path))
                if stopping:
                    accelerator.print(f"{stop.signal_name}: stopped after step {state.step}, saved {path.name}; "
                                      f"continue with --resume latest")
                    break
                evaluate_and_sample(state.step, do_eval=state.step % args.eval_every == 0 or last,
                                    do_sample=state.step % args.sample_every == 0 or last)
                if last:
                    break
            else:  # the epoch ran out
                state.epoch += 1
                state.batches_in_epoch = 0
    finally:
        stop.close()
        progress.close()
    return {"accelerator": accelerator, "tokenizer": raw_tokenizer, "discriminator": objective.raw_discriminator,
            "state": state, "logs": to_float_dict(logs), "config": config, "stopped_by": stop.signal_name}


def main(argv=None, parser: argparse.ArgumentParser | None = None) -> dict:
    args = (parser or build_parser()).parse_args(argv)
    result = train(args)
    result["accelerator"].end_training()  # closes trackers and the process group
    return result


if __name__ == "__main__":
    run_recipe(main)
