"""Train a VQGAN tokenizer on anime faces (or any images) with accelerate.

The same script runs on a laptop CPU, one GPU, several GPUs or several machines:

    # CPU or one GPU (smoke run on the local faces, seconds)
    accelerate launch recipes/vqgan_anime.py --data ../shared/data/anime-faces --preset tiny --max-steps 6 \
        --output-dir runs/tiny
    # 64 px on a CPU: the small preset, as many steps as an hour allows
    accelerate launch recipes/vqgan_anime.py --data ../shared/data/anime-faces --preset small --time-budget 1h \
        --output-dir runs/small64
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
from dataclasses import replace

import torch

import vqstack
from vqstack.core.files import publish_dir, staging_dir
from vqstack.data import ImageDataset, load_image_dataset
from vqstack.data.images import check_readable, hold_out
from vqstack.training.config import PRESETS, resolve_config
from vqstack.training.ema import weight_ema
from vqstack.training.loop import Trainer, add_loop_arguments
from vqstack.training.objectives import LossWeights, VQGANObjective
from vqstack.training.reporting import save_comparison_grid
from vqstack.training.runtime import run_recipe, usage_errors

DEFAULT_DATA = "huggan/anime-faces"  # a public anime-faces dataset on the Hub


def build_parser(description: str = __doc__) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=DEFAULT_DATA, help="Hub id, image folder, 'dir/*.tar' shards or parquet files "
                                                        "(default: %(default)s)")
    p.add_argument("--preset", default="base", choices=sorted(PRESETS), help="model and training sizes (default: base)")
    p.add_argument("--config", default=None, help="JSON/YAML file overriding any part of the preset")
    p.add_argument("--resolution", type=int, default=None,
                   help="image size (default: the preset's, 32 tiny / 64 small and base)")
    p.add_argument("--batch-size", type=int, default=None, help="images per process per step (default: the preset's)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate of both networks (default: the preset's)")
    p.add_argument("--quantizer", default=None, help="registered quantizer name; its kwargs come from --config")
    p.add_argument("--disc-start", type=int, default=None, help="step the discriminator starts (default: the preset's)")
    p.add_argument("--disc-weight", type=float, default=None, help="adversarial weight, 0 = no GAN (default: 0.1)")
    p.add_argument("--perceptual-weight", type=float, default=None, help="0 = no perceptual loss (default: the preset's)")
    p.add_argument("--perceptual-weights", default=None,
                   help="local backbone weights for the 'lpips' perceptual loss (no download offline)")
    p.add_argument("--ema-decay", type=float, default=0.0, help="EMA of the tokenizer weights, 0 = off (default: 0)")
    p.add_argument("--channels-last", action="store_true",
                   help="image batches in channels_last memory format, so every convolution runs NHWC kernels; "
                        "weights, checkpoints and exports keep the standard layout (default: off)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the encoder, decoder, discriminator and perceptual network (the first steps "
                        "and the first evaluation pay the compilation; default: off)")
    return add_loop_arguments(p, output_dir="runs/vqgan-anime", max_steps=20000, warmup_steps=0, eval_every=1000,
                              sample_every=500, num_workers=2)


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


def memory_format(args) -> torch.memory_format:
    """The layout of image batches: channels_last makes convolutions pick NHWC kernels (an input in channels_last
    is enough). The weights stay contiguous: safetensors refuses other layouts, and a resumed optimizer state would
    come back contiguous while its parameters were not."""
    return torch.channels_last if args.channels_last else torch.contiguous_format


def compile_networks(*modules) -> None:
    """torch.compile each module's forward, for fixed shapes. The module itself stays (class, state-dict keys,
    registry spec, forward hooks), so checkpoints, exports and resume see the same modules. Each class's forward is
    its own code object: nn.Module.compile would compile the one ``_call_impl`` they share, whose inputs change shape
    from module to module, and turn every size dynamic. Call it after copying a module (the EMA weights): a deep copy
    would keep the compiled forward, bound to the original's weights."""
    import torch._functorch.config

    # VQGAN's adaptive weight differentiates through the decoder with retain_graph=True (then the backward runs),
    # which a compiled backward that donates its buffers refuses
    torch._functorch.config.donated_buffer = False
    for module in modules:
        if module is not None:
            module.forward = torch.compile(module.forward, dynamic=False)


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
    with usage_errors():  # a bad --config or option: one line, exit 2
        config = make_config(args)
    trainer = Trainer(args, name="vqgan")
    accelerator, output_dir = trainer.accelerator, trainer.output_dir

    # --- data: the last eval_size readable images are held out for evaluation -----------------------------------
    with accelerator.main_process_first(), usage_errors():  # the first process builds the datasets cache
        images = load_image_dataset(args.data)  # a --data that is no data set: one line, exit 2
    with usage_errors():  # nothing readable: one line before training, not a traceback from a worker
        every_row = ImageDataset(images, config["resolution"], random_flip=False)
        check_readable(every_row, args.data)
        train_rows, eval_images = hold_out(every_row, min(config["eval_size"], max(1, len(images) // 10)))
        train_set = ImageDataset(images.select(train_rows), config["resolution"], seed=args.seed)
        check_readable(train_set, args.data)
    eval_images = eval_images.to(trainer.device)
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
        perceptual.to(trainer.device)
    betas = (0.5, 0.9)  # taming's GAN-friendly Adam betas
    opt_g = torch.optim.Adam(tokenizer.parameters(), lr=config["lr"], betas=betas)
    schedulers = {"lr": trainer.schedule(opt_g)}
    if use_gan:
        opt_d = torch.optim.Adam(discriminator.parameters(), lr=config["lr"], betas=betas)
        # its cosine spans the steps the discriminator trains: from disc_start to the end
        schedulers["d_lr"] = trainer.schedule(opt_d, start=weights.disc_start)
        tokenizer, discriminator, opt_g, opt_d, dataloader = trainer.prepare(
            tokenizer, discriminator, opt_g, opt_d, dataloader)
    else:
        tokenizer, opt_g, dataloader = trainer.prepare(tokenizer, opt_g, dataloader)
    models = [tokenizer, discriminator] if use_gan else [tokenizer]
    raw_tokenizer = accelerator.unwrap_model(tokenizer)
    objective = VQGANObjective(weights, perceptual, discriminator,
                               accelerator.unwrap_model(discriminator) if use_gan else None, raw_tokenizer.colour)

    def rescale_disc_start() -> None:  # a time budget has planned the run's length: the GAN starts at its share
        objective.weights = replace(weights, disc_start=trainer.at(weights.disc_start))

    trainer.on_plan.append(rescale_disc_start)
    if objective.lecam is not None:
        objective.lecam.to(trainer.device)
        trainer.register(objective.lecam)
    ema = None
    if args.ema_decay > 0:
        ema = weight_ema(raw_tokenizer, args.ema_decay)
        trainer.register(ema)
    if args.compile:  # after the EMA copy; the quantizer stays eager (k-means, restarts, fp32 distances)
        compile_networks(raw_tokenizer.encoder, raw_tokenizer.decoder, objective.raw_discriminator, perceptual)
    layout = memory_format(args)

    # built before the resume: building draws random weights, and the RNG state loaded next must be the last word
    suite = eval_suite(raw_tokenizer, config["resolution"]).to(trainer.device)
    trainer.begin(config)

    def exported() -> vqstack.Tokenizer:
        return ema.module if ema is not None else raw_tokenizer

    def step(batch) -> tuple[bool, dict]:
        """One micro-batch: one encoder/decoder forward, the generator's backward and step, then the
        discriminator's (from disc_start on)."""
        images = batch["pixel_values"].contiguous(memory_format=layout)
        out = tokenizer(images)
        with accelerator.autocast():
            loss, logs = objective.generator_loss(images, out, trainer.state.step, raw_tokenizer.decoder.last_layer)
        accelerator.backward(loss)
        ok = trainer.optimizer_step(opt_g, tokenizer, what="generator")
        if objective.gan_active(trainer.state.step):
            with accelerator.autocast():
                d_loss, d_logs = objective.discriminator_loss(images, out.recon, trainer.state.step)
            accelerator.backward(d_loss)
            trainer.optimizer_step(opt_d, discriminator, max_norm=0.0, what="discriminator")
            logs.update(d_logs)
        return ok, {**logs, "usage": out.metrics["usage"], "perplexity": out.metrics["perplexity"]}

    def export() -> None:
        """tokenizer/ (the EMA weights when kept), written into tokenizer.tmp and then renamed: an older tokenizer/
        is replaced only by a complete new one."""
        staging = staging_dir(output_dir / "tokenizer")
        exported().save_pretrained(staging)
        publish_dir(staging, output_dir / "tokenizer")

    def sample(step: int) -> None:
        model = exported()
        with torch.no_grad():
            model.eval()
            recon = model(eval_images[:8]).recon
            model.train()
        save_comparison_grid(eval_images[:8].cpu(), recon.cpu(), output_dir / "samples" / f"step-{step}.png")

    trainer.fit(dataloader, step, models=models, batch_size=config["batch_size"], schedulers=schedulers,
                epoch_datasets=[train_set],
                after_update=(lambda: ema.update_parameters(raw_tokenizer)) if ema is not None else None,
                export=export, evaluate=lambda _: evaluate(exported(), eval_images, suite, config["batch_size"]),
                sample=sample, postfix=("loss", "usage"))
    return trainer.result(tokenizer=raw_tokenizer, discriminator=objective.raw_discriminator, config=config)


def main(argv=None, parser: argparse.ArgumentParser | None = None) -> dict:
    args = (parser or build_parser()).parse_args(argv)
    result = train(args)
    result["accelerator"].end_training()  # closes trackers and the process group
    return result


if __name__ == "__main__":
    run_recipe(main)
