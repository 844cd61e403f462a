"""pix2pix baseline (Isola et al. 2017, "Image-to-Image Translation with Conditional Adversarial Networks") for
line art -> anime face: the reference that a condition-reading prior should beat.

What is pix2pix here, as in the paper and its reference code (junyanz/pytorch-CycleGAN-and-pix2pix):

- generator: a U-Net, 4x4 stride-2 convolutions down to 1x1 (--depth; log2(resolution) by default) and 4x4
  transposed convolutions back up, each decoder layer concatenated with the encoder layer of its size; LeakyReLU 0.2
  down, ReLU up, tanh out; no norm on the first and the innermost encoder layer; 50% dropout after the first 3
  decoder layers (the paper's CD512 layers), the generator's only noise: there is no z;
- discriminator: vqstack's PatchGAN (vqstack/discriminators/patchgan.py, pix2pix's NLayerDiscriminator) on the
  pair (condition, image) concatenated along channels, so it judges whether the image fits the line art;
- loss: G minimises GAN + 100 x L1 to the real image; D minimises half the sum of its real and fake
  cross-entropies (the "vanilla" GAN loss with logits); real and fake go through D as separate batches;
- Adam, lr 2e-4, betas (0.5, 0.999) for both, weights drawn from N(0, 0.02) (norm scales from N(1, 0.02)).

What differs, and why:

- sizes for 64 px faces on a CPU: the width is --width (pix2pix: 64), channels double per layer up to 8 x width;
  the PatchGAN has --d-layers 2 by default (34x34 patches, half a 64 px face; pix2pix's 3 layers give 70x70 patches,
  more than the whole image here);
- --norm instance by default (pix2pix trains with batch norm at batch size 1, which is instance norm, and runs it on
  the test batch's statistics): the output of one image never depends on the others in its batch; --norm batch is
  there, and then translate() uses the running statistics (eval mode);
- no random-jitter crops (the faces are already aligned crops), random horizontal flips only (--no-flip);
- a constant learning rate, no linear decay: the run is cut by a wall-clock budget, not a number of epochs;
- every training image gets its own condition, drawn on the fly from (seed, epoch, index): the ``lineart`` condition
  draws a line style (detector, thickness, threshold, sharpness) per image, so a new epoch shows new line styles.

Train (the last --eval-images readable images are held out; metrics.jsonl gets a line every --log-every steps and
the held-out L1 every --eval-every steps; OUTPUT/pix2pix/{config.json, model.safetensors} holds the generator, saved
every --save-every steps and at the end, each time written into pix2pix.tmp/ and then renamed)::

    OMP_NUM_THREADS=1 python benchmarks/pix2pix.py train --data ../shared/data/anime-faces --resolution 64 \\
        --condition lineart --eval-images 256 --time-budget 30m --output-dir runs/pix2pix64 --seed 0 \\
        --batch-size 32 --threads 1
    # a speed check: 20 steps
    OMP_NUM_THREADS=1 python benchmarks/pix2pix.py train --data ../shared/data/anime-faces --max-steps 20 \\
        --log-every 5 --eval-every 100000 --output-dir runs/pix2pix-speed

The last line on stdout is a JSON summary (steps, seconds, images/s, held-out L1, parameter counts, output folder).

Use a trained one (another script imports this file)::

    import importlib.util
    spec = importlib.util.spec_from_file_location("pix2pix", "benchmarks/pix2pix.py")
    pix2pix = importlib.util.module_from_spec(spec); spec.loader.exec_module(pix2pix)
    generator, config = pix2pix.load_pix2pix("runs/pix2pix64/pix2pix")
    condition = vqstack.conditions.build_condition(config["condition"])
    images = pix2pix.translate(generator, condition(faces), dropout=True, seed=0)   # (B, 3, H, W) in [-1, 1]

pix2pix keeps dropout on at test time (``dropout=True``), and reports that it changes the output very little: the
generator learns to ignore its noise. ``dropout=False`` gives the deterministic output.

Held-out metrics (metrics.jsonl, lines with "eval_l1"): mean |G(c) - x| on the [-1, 1] scale over the held-out
images, each with one fixed condition (``condition.sample(image, i, epoch=0, seed=0)`` for held-out image i, the
same for every training seed); ``eval_l1`` with dropout (masks seeded, so repeatable), ``eval_l1_no_dropout``
without.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import vqstack
from vqstack.conditions import Condition
from vqstack.core.files import publish_dir, staging_dir
from vqstack.core.serialization import load_weights, read_config, save_weights, write_config
from vqstack.data import ImageDataset, load_image_dataset
from vqstack.data.images import SkipTally, check_readable, hold_out
from vqstack.discriminators.patchgan import PatchDiscriminator
from vqstack.training.budget import TimeBudget, parse_duration

L1_WEIGHT = 100.0  # pix2pix's lambda
LR, BETAS = 2e-4, (0.5, 0.999)
EVAL_SEED = 0  # the held-out conditions and dropout masks: the same for every training seed
FOLDER = "pix2pix"  # OUTPUT/pix2pix/ holds the generator


# --- the generator: pix2pix's U-Net ------------------------------------------------------------------------------


def norm_layer(kind: str, channels: int) -> nn.Module:
    if kind == "instance":  # pix2pix's instance norm: no affine, no running statistics
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    raise ValueError(f"norm must be 'instance' or 'batch', got {kind!r}.")


class UNetGenerator(nn.Module):
    """condition (B, in_channels, H, W) in [-1, 1] -> image (B, out_channels, H, W) in [-1, 1]; H and W divisible
    by 2 ** depth.

    Encoder layer i: [LeakyReLU 0.2] conv 4x4 stride 2 [norm], width * min(2 ** i, 8) channels; decoder layers go
    back up with ReLU, transposed conv 4x4 stride 2, norm and (the first ``dropout_layers``) dropout, each reading
    the previous decoder output concatenated with the encoder output of the same size; the last one ends in tanh.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 3, width: int = 64, depth: int = 6,
                 norm: str = "instance", dropout: float = 0.5, dropout_layers: int = 3):
        super().__init__()
        if width < 1 or depth < 2 or not 0 <= dropout < 1 or dropout_layers < 0:
            raise ValueError(f"UNetGenerator needs width >= 1, depth >= 2, 0 <= dropout < 1, dropout_layers >= 0; "
                             f"got width={width}, depth={depth}, dropout={dropout}, dropout_layers={dropout_layers}.")
        norm_layer(norm, 1)  # an unknown norm fails here, with its name
        self.config = {"in_channels": in_channels, "out_channels": out_channels, "width": width, "depth": depth,
                       "norm": norm, "dropout": dropout, "dropout_layers": dropout_layers}
        self.in_channels, self.depth = in_channels, depth
        bias = norm == "instance"  # batch norm's shift makes a conv bias redundant; instance norm has none
        chs = [width * min(2 ** i, 8) for i in range(depth)]

        self.downs = nn.ModuleList()
        for i in range(depth):
            layers = [] if i == 0 else [nn.LeakyReLU(0.2)]  # not in place: the input is a skip connection
            has_norm = 0 < i < depth - 1  # pix2pix: no norm on the outermost and the innermost layer
            layers.append(nn.Conv2d(in_channels if i == 0 else chs[i - 1], chs[i], 4, 2, 1,
                                    bias=bias or not has_norm))
            if has_norm:
                layers.append(norm_layer(norm, chs[i]))
            self.downs.append(nn.Sequential(*layers))

        self.ups = nn.ModuleList()  # ups[0] is the innermost; ups[k] brings level depth-1-k up to its parent's size
        for k, i in enumerate(reversed(range(depth))):
            c_in = chs[i] if i == depth - 1 else 2 * chs[i]  # the innermost reads the bottleneck alone
            if i == 0:
                layers = [nn.ReLU(), nn.ConvTranspose2d(c_in, out_channels, 4, 2, 1), nn.Tanh()]
            else:
                layers = [nn.ReLU(), nn.ConvTranspose2d(c_in, chs[i - 1], 4, 2, 1, bias=bias),
                          norm_layer(norm, chs[i - 1])]
                if k < dropout_layers and dropout > 0:
                    layers.append(nn.Dropout(dropout))
            self.ups.append(nn.Sequential(*layers))
        init_weights(self)

    def forward(self, condition: torch.Tensor) -> torch.Tensor:
        skips, h = [], condition
        for down in self.downs:
            h = down(h)
            skips.append(h)
        h = self.ups[0](skips[-1])
        for up, skip in zip(self.ups[1:], reversed(skips[:-1])):
            h = up(torch.cat([h, skip], 1))
        return h


def init_weights(module: nn.Module) -> None:
    """pix2pix's "normal" init: conv weights N(0, 0.02), biases 0, norm scales N(1, 0.02)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# --- using a trained one -------------------------------------------------------------------------------------


def load_pix2pix(folder, device="cpu") -> tuple[UNetGenerator, dict]:
    """``(generator in eval mode, config)`` from a folder that ``train`` wrote (OUTPUT/pix2pix). ``config`` holds
    "generator" (the U-Net's sizes), "resolution", "condition" (``build_condition(config["condition"])`` rebuilds
    it), "steps", "seconds" and "trained" (the run's options)."""
    config = read_config(folder)
    generator = UNetGenerator(**config["generator"])
    load_weights(generator, folder, device=device)
    return generator.to(device).eval(), config


@torch.no_grad()
def translate(generator: UNetGenerator, condition_images: torch.Tensor, dropout: bool = True,
              seed: int | None = None, batch_size: int = 64) -> torch.Tensor:
    """Condition images (B, C, H, W) in [-1, 1] -> images (B, 3, H, W) in [-1, 1], on the conditions' device.

    ``dropout=True`` keeps the decoder's dropout on, as pix2pix does at test time (its only noise; pix2pix reports
    that it varies the output very little); ``seed`` fixes the dropout masks without touching the global RNG.
    Norm layers run in eval mode (instance norm has no running statistics, so this only matters for --norm batch)."""
    if condition_images.dim() != 4 or condition_images.shape[1] != generator.in_channels:
        raise ValueError(f"translate takes condition images (B, {generator.in_channels}, H, W), got "
                         f"{tuple(condition_images.shape)}.")
    side = 2 ** generator.depth
    if condition_images.shape[-1] % side or condition_images.shape[-2] % side:
        raise ValueError(f"This U-Net halves the size {generator.depth} times: H and W must be multiples of {side}, "
                         f"got {tuple(condition_images.shape[-2:])}.")
    training = generator.training
    generator.eval()
    for m in generator.modules():
        if isinstance(m, nn.Dropout):
            m.train(dropout)
    device = next(generator.parameters()).device
    devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices, enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            out = [generator(chunk.to(device, torch.float32)).to(condition_images.device)
                   for chunk in condition_images.split(batch_size)]
    finally:
        generator.train(training)
    return torch.cat(out)


# --- data: (condition, image) pairs made on the fly -------------------------------------------------------------


class ConditionedImages(torch.utils.data.Dataset):
    """``images`` (an ImageDataset) with "condition" added to each sample: ``condition.sample`` of the (flipped)
    image, seeded by (seed, epoch, index) like the flips, so a sample's condition is the same in any worker and in a
    rerun, and new each epoch. ``set_epoch`` before each epoch's iterator is made (workers copy the dataset)."""

    def __init__(self, images: ImageDataset, condition: Condition, seed: int = 0):
        self.images, self.condition, self.seed, self.epoch = images, condition, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.images.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        sample = self.images[index]
        sample["condition"] = self.condition.sample(sample["pixel_values"], index, self.epoch, self.seed)
        return sample


# --- training ------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("train", help="train a pix2pix generator (see the module docstring)")
    p.add_argument("--data", required=True, help="image folder, shards or Hub id (as the recipes' --data)")
    p.add_argument("--resolution", type=int, default=64, help="image side (default: %(default)s)")
    p.add_argument("--condition", default="lineart", help="registered condition (default: %(default)s)")
    p.add_argument("--eval-images", type=int, default=256,
                   help="held-out images, the last readable ones (at most a tenth of the data) (default: %(default)s)")
    p.add_argument("--time-budget", default="30m",
                   help="wall-clock budget, loading and the final save included: 30m, 1h30m, 90s (default: "
                        "%(default)s)")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps as well (default: none)")
    p.add_argument("--output-dir", default="runs/pix2pix64", help="(default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=32, help="(default: %(default)s)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    p.add_argument("--num-workers", type=int, default=0, help="data loader processes (default: %(default)s)")
    p.add_argument("--width", type=int, default=64, help="U-Net width of the first layer, pix2pix's ngf; doubles per "
                                                         "layer up to 8x (default: %(default)s)")
    p.add_argument("--depth", type=int, default=None,
                   help="U-Net downsamplings (default: log2(resolution), down to 1x1 as pix2pix)")
    p.add_argument("--norm", choices=("instance", "batch"), default="instance", help="(default: %(default)s)")
    p.add_argument("--dropout", type=float, default=0.5, help="decoder dropout (default: %(default)s)")
    p.add_argument("--d-width", type=int, default=64, help="PatchGAN width, pix2pix's ndf (default: %(default)s)")
    p.add_argument("--d-layers", type=int, default=2,
                   help="PatchGAN stride-2 layers: 1, 2, 3 = 16, 34, 70 px patches (default: %(default)s)")
    p.add_argument("--l1-weight", type=float, default=L1_WEIGHT, help="(default: %(default)s)")
    p.add_argument("--lr", type=float, default=LR, help="Adam lr of both networks (default: %(default)s)")
    p.add_argument("--no-flip", action="store_true", help="no random horizontal flips")
    p.add_argument("--log-every", type=int, default=50, help="(default: %(default)s)")
    p.add_argument("--eval-every", type=int, default=500, help="(default: %(default)s)")
    p.add_argument("--save-every", type=int, default=1000, help="(default: %(default)s)")
    return parser


def check_args(args) -> None:
    for name in ("resolution", "eval_images", "batch_size", "width", "d_width", "d_layers", "log_every",
                 "eval_every", "save_every"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}.")
    if args.max_steps is not None and args.max_steps < 0:
        raise SystemExit(f"--max-steps must be >= 0, got {args.max_steps}.")
    if args.depth is None:
        args.depth = int(math.log2(args.resolution))
    if args.depth < 2 or args.resolution % 2 ** args.depth:
        raise SystemExit(f"--resolution {args.resolution} must be divisible by 2 ** --depth ({args.depth}, at least "
                         f"2): use a power of two, or a smaller --depth.")
    if args.resolution < 3 * 2 ** args.d_layers:
        raise SystemExit(f"--d-layers {args.d_layers} needs --resolution >= {3 * 2 ** args.d_layers}.")


def gan_loss(logits: torch.Tensor, real: bool) -> torch.Tensor:
    """pix2pix's "vanilla" GAN loss: binary cross-entropy of the patch logits against all-real or all-fake."""
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, target)


def evaluate(generator, conditions, images, batch_size) -> dict:
    """Held-out L1 (mean absolute error on the [-1, 1] scale), with seeded dropout and without."""
    l1 = {}
    for key, dropout in (("eval_l1", True), ("eval_l1_no_dropout", False)):
        out = translate(generator, conditions, dropout=dropout, seed=EVAL_SEED, batch_size=batch_size)
        l1[key] = round(float((out - images).abs().mean()), 5)
    return l1


def save_generator(generator, folder: Path, config: dict) -> None:
    """config.json + model.safetensors, written into <folder>.tmp and renamed: a complete folder or the old one."""
    staging = staging_dir(folder)
    write_config(staging, config)
    save_weights(generator, staging)
    publish_dir(staging, folder)


def train(args) -> dict:
    try:
        clock = TimeBudget(parse_duration(args.time_budget))  # started now: loading the data counts
    except ValueError as err:
        raise SystemExit(str(err)) from err
    check_args(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    log_file = (output / "metrics.jsonl").open("w")

    def log(record: dict) -> None:
        log_file.write(json.dumps(record) + "\n")
        log_file.flush()
        print(json.dumps(record), file=sys.stderr)

    # --- data: the last --eval-images readable images held out, each with one fixed condition ---------------------
    condition = vqstack.build("condition", args.condition)
    images = load_image_dataset(args.data)
    every_row = ImageDataset(images, args.resolution, random_flip=False)
    check_readable(every_row, args.data)
    train_rows, eval_images = hold_out(every_row, min(args.eval_images, max(1, len(images) // 10)))
    eval_conditions = torch.stack([condition.sample(image, i, epoch=0, seed=EVAL_SEED)
                                   for i, image in enumerate(eval_images)])
    train_set = ConditionedImages(ImageDataset(images.select(train_rows), args.resolution,
                                               random_flip=not args.no_flip, seed=args.seed), condition, args.seed)
    if len(train_set) < args.batch_size:
        raise SystemExit(f"{len(train_set)} training images cannot fill a batch of {args.batch_size}.")
    loader = torch.utils.data.DataLoader(train_set, batch_size=args.batch_size, shuffle=True, drop_last=True,
                                         num_workers=args.num_workers,
                                         generator=torch.Generator().manual_seed(args.seed))

    # --- models and optimizers --------------------------------------------------------------------------------
    generator = UNetGenerator(condition.channels, 3, width=args.width, depth=args.depth, norm=args.norm,
                              dropout=args.dropout)
    discriminator = PatchDiscriminator(in_channels=condition.channels + 3, ch=args.d_width,
                                       num_layers=args.d_layers, norm="batch")  # pix2pix's D: batch norm
    g_opt = torch.optim.Adam(generator.parameters(), lr=args.lr, betas=BETAS)
    d_opt = torch.optim.Adam(discriminator.parameters(), lr=args.lr, betas=BETAS)
    sizes = {"generator_params": parameter_count(generator), "discriminator_params": parameter_count(discriminator)}

    def config(step: int, evaluation: dict) -> dict:
        return {"model": "pix2pix", "generator": generator.config, "resolution": args.resolution,
                "condition": condition.to_config(), "steps": step, "seconds": round(clock.elapsed(), 1),
                "eval": evaluation, **sizes,
                "trained": {"data": str(args.data), "seed": args.seed, "batch_size": args.batch_size,
                            "lr": args.lr, "betas": list(BETAS), "l1_weight": args.l1_weight,
                            "flip": not args.no_flip, "eval_images": len(eval_images),
                            "time_budget": args.time_budget, "max_steps": args.max_steps,
                            "threads": torch.get_num_threads(),
                            "discriminator": {"name": "patchgan", "in_channels": condition.channels + 3,
                                              "ch": args.d_width, "num_layers": args.d_layers, "norm": "batch"}}}

    def train_step(batch) -> dict:
        real, cond = batch["pixel_values"], batch["condition"]
        fake = generator(cond)
        # D: real pairs -> 1, fake pairs -> 0, half the sum (pix2pix slows D down relative to G this way)
        discriminator.requires_grad_(True)
        d_opt.zero_grad(set_to_none=True)
        logits_fake = discriminator(torch.cat([cond, fake.detach()], 1))
        logits_real = discriminator(torch.cat([cond, real], 1))
        d_loss = 0.5 * (gan_loss(logits_fake, False) + gan_loss(logits_real, True))
        d_loss.backward()
        d_opt.step()
        # G: fool the updated D, and stay close to the real image in L1
        discriminator.requires_grad_(False)
        g_opt.zero_grad(set_to_none=True)
        g_gan = gan_loss(discriminator(torch.cat([cond, fake], 1)), True)
        g_l1 = (fake - real).abs().mean()
        (g_gan + args.l1_weight * g_l1).backward()
        g_opt.step()
        return {"g_l1": g_l1.item(), "g_gan": g_gan.item(), "d_loss": d_loss.item(),
                "d_real": torch.sigmoid(logits_real).mean().item(), "d_fake": torch.sigmoid(logits_fake).mean().item()}

    # --- the loop: until the budget (with the final evaluation and save) or --max-steps is spent ------------------
    step, epoch, stopped = 0, 0, None
    interval, interval_steps, interval_seconds = {}, 0, 0.0
    evaluation, eval_seconds, save_seconds = {}, 0.0, 0.0
    tally = SkipTally()
    max_steps = math.inf if args.max_steps is None else args.max_steps
    generator.train(), discriminator.train()
    clock.resume_steps()
    while stopped is None:
        train_set.set_epoch(epoch)
        for batch in loader:
            if step >= max_steps:
                stopped = "max_steps"
                break
            next_step = clock.recent_step_seconds() if clock.step_times else 0.0
            if clock.elapsed() + next_step + eval_seconds + save_seconds > clock.seconds:
                stopped = "time_budget"
                break
            losses = train_step(batch)
            tally.add(batch)
            step += 1
            clock.step_done()
            for key, value in losses.items():
                interval[key] = interval.get(key, 0.0) + value
            interval_steps += 1
            interval_seconds += clock.step_times[-1] if clock.step_times else 0.0
            if step % args.log_every == 0:
                log({"step": step, "epoch": epoch, "elapsed_s": round(clock.elapsed(), 2),
                     "images_per_sec": round(interval_steps * args.batch_size / max(interval_seconds, 1e-9), 2),
                     **{key: round(value / interval_steps, 5) for key, value in interval.items()}, **tally.as_dict()})
                interval, interval_steps, interval_seconds = {}, 0, 0.0
            if step % args.eval_every == 0:
                start = time.perf_counter()
                evaluation = evaluate(generator, eval_conditions, eval_images, args.batch_size)
                eval_seconds = time.perf_counter() - start
                log({"step": step, "elapsed_s": round(clock.elapsed(), 2), **evaluation,
                     "eval_seconds": round(eval_seconds, 2)})
                clock.resume_steps()
            if step % args.save_every == 0:
                start = time.perf_counter()
                save_generator(generator, output / FOLDER, config(step, evaluation))
                save_seconds = time.perf_counter() - start
                clock.resume_steps()
        else:  # the epoch ran out: the next one, with new flips and new conditions
            epoch += 1

    # --- the end: evaluate, save, a sample grid, the summary line -----------------------------------------------
    if not evaluation or step % args.eval_every:
        evaluation = evaluate(generator, eval_conditions, eval_images, args.batch_size)
        log({"step": step, "elapsed_s": round(clock.elapsed(), 2), **evaluation})
    if step % args.save_every or not (output / FOLDER).is_dir():
        save_generator(generator, output / FOLDER, config(step, evaluation))
    save_grid(generator, eval_conditions[:8], eval_images[:8], output / "samples.png")
    log_file.close()
    times = clock.step_times[2:] or clock.step_times  # the first steps allocate: not typical
    seconds_per_step = sum(times) / len(times) if times else None
    summary = {"benchmark": "pix2pix", "output": str(output / FOLDER), "steps": step, "epochs_started": epoch + 1,
               "stopped": stopped, "seconds": round(clock.elapsed(), 1),
               "steps_per_sec": round(1 / seconds_per_step, 4) if seconds_per_step else None,
               "images_per_sec": round(args.batch_size / seconds_per_step, 2) if seconds_per_step else None,
               **evaluation, **sizes, "threads": torch.get_num_threads(), **tally.as_dict()}
    print(json.dumps(summary))
    return summary


def save_grid(generator, conditions, images, path: Path) -> None:
    """Rows: condition, pix2pix (dropout on, seeded), the real image; one column per held-out face."""
    from torchvision.utils import save_image

    out = translate(generator, conditions, dropout=True, seed=EVAL_SEED)
    rows = torch.cat([conditions.expand(-1, 3, -1, -1) if conditions.shape[1] == 1 else conditions[:, :3],
                      out, images])
    save_image(rows * 0.5 + 0.5, path, nrow=len(conditions), padding=1)


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    return train(args)


if __name__ == "__main__":
    main()
