"""Train a restorer (CodeFormer's codebook lookup) on top of a trained tokenizer: degraded face in, clean codes out.

The tokenizer stays frozen: its encoder's copy in the restorer reads a degraded image, a transformer predicts the
code the tokenizer gives the clean image at each position, and the tokenizer's own codebook and decoder draw the
result. Training pairs are made on the fly: every training image is degraded by --degradations in the data loader.

    # 1. a tokenizer (recipes/vqgan_anime.py writes runs/vqgan-anime/tokenizer)
    # 2. the restorer
    accelerate launch recipes/restore_anime.py --tokenizer runs/vqgan-anime/tokenizer \
        --data ../shared/data/anime-faces --output-dir runs/restore-anime
    # other damage: steps in order, ';' separates alternatives (one drawn per image), LOW-HIGH drawn per image
    accelerate launch recipes/restore_anime.py ... --degradations "blur:0.5-2,down:2|4,noise:0-0.1,jpeg:30-90"
    # 2 processes (CPU over gloo, or GPUs), bf16, resume where the newest complete checkpoint left off
    accelerate launch --multi_gpu --num_processes 2 recipes/restore_anime.py ... --mixed-precision bf16
    accelerate launch recipes/restore_anime.py ... --resume latest
    # 3. restore images (fidelity 0 trusts the learned codes, 1 stays closest to the input)
    vqstack restore --tokenizer runs/vqgan-anime/tokenizer --restorer runs/restore-anime/restorer \
        --image degraded/ --out restored/ --fidelity 0.5

Images are resized to the tokenizer's training resolution (--resolution overrides it). The loss is --code-weight x
the cross-entropy to the clean image's codes plus --feature-weight x the squared distance of the restorer's
features to the clean image's; the restorer starts from the tokenizer's encoder. Only single-codebook tokenizers
(vq, ema, fsq, lfq) can be restored from: a restorer predicts one code per position.

Held-out evaluation: the last --eval-images readable images, each damaged once by every pipeline of
--eval-degradations (fixed draws), are scored every --eval-every steps as eval/<case>/<metric> and as the mean over
the cases, eval/<metric>: code_accuracy, code_ce and feature_l2 against the clean image's codes and features;
psnr/ssim (--eval-metrics, stlpips optional) of the restoration at fidelity 0 (<metric>) and 1
(<metric>_fidelity1) against the clean image, of the tokenizer's plain encode/decode of the damaged image
(<metric>_tokenizer: the baseline) and of the damaged image itself (<metric>_input); eval/clean/<metric> is the
tokenizer's reconstruction of the clean images, the ceiling of fidelity 0.

Writes to --output-dir: checkpoint-<step>/ (accelerate state: restorer, optimizer, scheduler, RNG, step, epoch and
data position), restorer/ (config.json + model.safetensors, naming the tokenizer it serves and the degradations it
learned), samples/step-<N>.png (rows: damaged, tokenizer alone, restored at fidelity 0 and 0.5, original) and
metrics.jsonl.
"""
from __future__ import annotations

import argparse

import torch

import vqstack
from vqstack.core.files import publish_dir, staging_dir
from vqstack.core.registry import component_spec
from vqstack.core.serialization import weights_sha256
from vqstack.data import ImageDataset, load_image_dataset
from vqstack.data.images import check_readable, hold_out
from vqstack.data.degradations import DegradedImages, parse_spec
from vqstack.restorers.objective import CODE_WEIGHT, FEATURE_WEIGHT, clean_targets, restoration_loss
from vqstack.restorers.saving import save_restorer
from vqstack.restorers import tokenizer_sizes
from vqstack.restorers.evaluation import Evaluation, eval_cases, parse_eval_metrics
from vqstack.training.loop import Trainer, add_loop_arguments
from vqstack.training.runtime import UsageError, run_recipe, usage_errors

DEFAULT_DEGRADATIONS = "down:4,noise:0-0.08;blur:0.5-3;jpeg:10-40"
EVAL_DEGRADATIONS = "down:4,noise:0.05;blur:2;jpeg:20"  # x4 down + noise, blur, JPEG: one fixed case each


def build_parser(description: str = __doc__) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokenizer", required=True, help="folder written by the tokenizer recipe (tokenizer/)")
    p.add_argument("--data", default="huggan/anime-faces", help="the images (same forms as the tokenizer recipe)")
    p.add_argument("--degradations", default=DEFAULT_DEGRADATIONS,
                   help="damage of the training inputs: steps blur, down, noise, poisson, jpeg in order, ';' between "
                        "alternatives (default: %(default)s)")
    p.add_argument("--eval-degradations", default=EVAL_DEGRADATIONS,
                   help="';'-separated fixed evaluation cases, each scored on its own (default: %(default)s)")
    p.add_argument("--eval-metrics", default="psnr,ssim",
                   help="image metrics of the evaluation, from psnr, ssim, stlpips (ST-LPIPS VGG16: several seconds "
                        "per evaluation on a CPU) (default: %(default)s)")
    p.add_argument("--eval-images", type=int, default=64, help="held-out images (default: %(default)s)")
    p.add_argument("--restorer", default="codeformer", help="registered restorer (default: %(default)s)")
    p.add_argument("--resolution", type=int, default=None,
                   help="image size (default: the tokenizer's training resolution)")
    p.add_argument("--width", type=int, default=256, help="transformer hidden size (default: %(default)s)")
    p.add_argument("--depth", type=int, default=4, help="transformer layers (default: %(default)s)")
    p.add_argument("--heads", type=int, default=8, help="attention heads (default: %(default)s)")
    p.add_argument("--dropout", type=float, default=0.0, help="transformer dropout (default: %(default)s)")
    p.add_argument("--code-weight", type=float, default=CODE_WEIGHT,
                   help="weight of the code cross-entropy (default: %(default)s)")
    p.add_argument("--feature-weight", type=float, default=FEATURE_WEIGHT,
                   help="weight of the feature L2 loss (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=64, help="images per process per step (default: %(default)s)")
    p.add_argument("--lr", type=float, default=4e-4, help="peak learning rate (default: %(default)s)")
    p.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay (default: %(default)s)")
    return add_loop_arguments(p, output_dir="runs/restore-anime", max_steps=10000, warmup_steps=100, eval_every=500,
                              sample_every=500, num_workers=2)


def check_sizes(args) -> None:
    for name in ("width", "depth", "heads", "batch_size", "max_steps", "eval_images", "grad_accum",
                 "checkpoint_every", "sample_every", "eval_every", "log_every"):
        value = getattr(args, name)
        if value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {value}.")
    if args.width % args.heads:
        raise ValueError(f"--width {args.width} must be divisible by --heads {args.heads}.")
    if not 0 <= args.dropout < 1:
        raise ValueError(f"--dropout must be in [0, 1), got {args.dropout}.")
    if args.code_weight < 0 or args.feature_weight < 0 or args.code_weight + args.feature_weight == 0:
        raise ValueError("--code-weight and --feature-weight must be >= 0, and not both 0.")


# --- training ------------------------------------------------------------------------------------------------


def load_tokenizer(args):
    """The frozen tokenizer and its training resolution; a multi-codebook one is refused."""
    tokenizer = vqstack.Tokenizer.from_pretrained(args.tokenizer)
    tokenizer_sizes(tokenizer.config)  # ValueError for residual / grouped quantizers: one code per position only
    resolution = args.resolution or tokenizer.config["encoder"]["kwargs"].get("resolution")
    if resolution is None:
        raise UsageError("The tokenizer's config names no training resolution: pass --resolution.")
    tokenizer.eval().requires_grad_(False)
    return tokenizer, int(resolution)


def train(args) -> dict:
    with usage_errors():  # bad options, a missing or multi-codebook tokenizer, a misspelt degradation: one line
        check_sizes(args)
        degradation = parse_spec(args.degradations, seed=args.seed)
        cases = eval_cases(args.eval_degradations, seed=args.seed)
        tokenizer, resolution = load_tokenizer(args)
        metrics = parse_eval_metrics(args.eval_metrics, resolution)
    trainer = Trainer(args, name="restore")
    accelerator, output_dir = trainer.accelerator, trainer.output_dir
    tokenizer.to(trainer.device)

    # --- data: the last --eval-images readable images are held out ----------------------------------------------
    with accelerator.main_process_first(), usage_errors():  # the first process builds the datasets cache
        images = load_image_dataset(args.data)  # a --data that is no data set: one line, exit 2
    with usage_errors():
        every_row = ImageDataset(images, resolution, random_flip=False)
        check_readable(every_row, args.data)
        train_rows, eval_images = hold_out(every_row, min(args.eval_images, max(1, len(images) // 10)))
        train_set = DegradedImages(ImageDataset(images.select(train_rows), resolution, seed=args.seed), degradation)
        check_readable(train_set.images, args.data)
    if len(train_set) < args.batch_size * accelerator.num_processes:
        raise UsageError(f"{len(train_set)} training images cannot fill one batch of {args.batch_size} per process "
                         f"({accelerator.num_processes} processes): lower --batch-size or add images.")
    # its own generator: making an iterator draws a worker seed, which must not move the global RNG (a resumed run
    # makes one more iterator than the run it continues)
    dataloader = torch.utils.data.DataLoader(train_set, batch_size=args.batch_size, shuffle=True, drop_last=True,
                                             num_workers=args.num_workers,
                                             generator=torch.Generator().manual_seed(args.seed))

    # --- the restorer --------------------------------------------------------------------------------------------
    with usage_errors():
        try:
            restorer = vqstack.build("restorer", args.restorer, tokenizer=tokenizer.config, image_size=resolution,
                                     width=args.width, depth=args.depth, heads=args.heads, dropout=args.dropout)
        except TypeError as err:  # a plugin restorer without these sizes: say what it takes
            raise UsageError(str(err)) from err
        restorer.init_from_tokenizer(tokenizer)
    decay, no_decay = [], []
    for name, param in restorer.named_parameters():  # no weight decay on norms, biases and position embeddings
        (no_decay if param.dim() < 2 or "position" in name else decay).append(param)
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.99))
    restorer, optimizer, dataloader = trainer.prepare(restorer, optimizer, dataloader)
    scheduler = trainer.schedule(optimizer)
    raw_restorer = accelerator.unwrap_model(restorer)

    # built before the resume: building ST-LPIPS draws random weights, and the RNG state loaded next has the last word
    evaluation = Evaluation(tokenizer, eval_images, cases, metrics, args.batch_size, trainer.device,
                            args.code_weight, args.feature_weight)
    sizes = {k: v for k, v in (component_spec(raw_restorer) or {}).get("kwargs", {}).items() if k != "tokenizer"}
    trainer.begin({"restorer": args.restorer, **sizes, "degradations": str(degradation),
                   "batch_size": args.batch_size, "lr": args.lr},
                  run_key={"tokenizer_sha256": weights_sha256(args.tokenizer)},
                  mismatch=f"{{checkpoint}} was trained for another tokenizer than --tokenizer {args.tokenizer} (its "
                           f"weights differ): start without --resume, or use another --output-dir.")

    def step(batch) -> tuple[bool, dict]:
        # the frozen tokenizer's codes and features of the clean images, in fp32, outside the autocast
        codes, features = clean_targets(tokenizer, batch["pixel_values"])
        with accelerator.autocast():
            out = restorer(batch["degraded"])
        loss, logs = restoration_loss(out, codes, features, args.code_weight, args.feature_weight)
        accelerator.backward(loss)
        return trainer.optimizer_step(optimizer, restorer, what="restorer"), {"loss": loss.detach(), **logs}

    def export() -> None:
        """restorer/, written into restorer.tmp and then renamed: an older one is replaced only by a complete one."""
        staging = staging_dir(output_dir / "restorer")
        save_restorer(raw_restorer, staging, args.tokenizer, degradations=degradation.to_config(),
                      eval_degradations=args.eval_degradations, image_size=resolution,
                      trained={"step": trainer.state.step, "data": str(args.data), "code_weight": args.code_weight,
                               "feature_weight": args.feature_weight})
        publish_dir(staging, output_dir / "restorer")

    trainer.fit(dataloader, step, models=[restorer], batch_size=args.batch_size, schedulers={"lr": scheduler},
                epoch_datasets=[train_set], export=export, evaluate=lambda _: evaluation(raw_restorer),
                sample=lambda step: evaluation.grid(raw_restorer, output_dir / "samples" / f"step-{step}.png"),
                postfix=("loss", "code_accuracy"))
    return trainer.result(restorer=raw_restorer, tokenizer=tokenizer)


def main(argv=None, parser: argparse.ArgumentParser | None = None) -> dict:
    args = (parser or build_parser()).parse_args(argv)
    result = train(args)
    result["accelerator"].end_training()
    return result


if __name__ == "__main__":
    run_recipe(main)
