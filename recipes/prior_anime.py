"""Train an autoregressive prior over a trained tokenizer's tokens: anime faces by hair and eye colour.

    # 1. a tokenizer (recipes/vqgan_anime.py writes runs/vqgan-anime/tokenizer)
    # 2. corrected tags for the shared anime-faces folder (its metadata.jsonl mixes up hair and eyes)
    python recipes/anime_tags.py --data ../shared/data/anime-faces --out runs/anime-tags.jsonl
    # 3. the prior: the images are encoded once into runs/prior-anime/tokens, then the transformer trains on them
    accelerate launch recipes/prior_anime.py --tokenizer runs/vqgan-anime/tokenizer \
        --data ../shared/data/anime-faces --metadata runs/anime-tags.jsonl --preset base --output-dir runs/prior-anime
    # 4. sample
    vqstack sample --tokenizer runs/vqgan-anime/tokenizer --prior runs/prior-anime/prior \
        --labels "blue hair,red eyes" --cfg-scale 3 --n 16 --seed 0 --out faces.png

Conditions: --attributes names metadata columns (default hair,eyes), read from the image folder's metadata.jsonl
or from --metadata FILE (same format, joined by file_name; the shared anime-faces folder needs the corrected tags
of step 2). Each image is conditioned on the tags it has ("blue hair", "red eyes"), untagged images on the null
condition, and --cond-dropout drops conditions so that classifier-free guidance works. --class-column trains a
class-conditional prior instead (recipes/prior_cifar10.py); --attributes "" an unconditional one.

Writes to --output-dir: tokens/ (the encoded data set, reused by later runs), checkpoint-<step>/ (accelerate
state), prior/ (config.json + model.safetensors), samples/step-<N>.png (one row per condition) and metrics.jsonl.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, set_seed
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

import vqstack
from vqstack.core import hook
from vqstack.core.serialization import save_component
from vqstack.data import load_image_dataset
from vqstack.data.labels import file_sha256, relabel
from vqstack.data.tokens import encode_dataset, load_token_dataset
from vqstack.pipeline import make_grid_image, to_pil
from vqstack.training.checkpoints import TrainState, resolve_resume, save_checkpoint
from vqstack.training.reporting import MetricsLog
from vqstack.training.runtime import cpu_processes

PRESETS = {
    "tiny": {"dim": 64, "depth": 2, "heads": 2, "batch_size": 32, "lr": 1e-3},
    "small": {"dim": 256, "depth": 4, "heads": 4, "batch_size": 64, "lr": 1e-3},  # ~3M parameters: CPU runs
    "base": {"dim": 512, "depth": 8, "heads": 8, "batch_size": 64, "lr": 3e-4},  # ~25M parameters
}


def build_parser(description: str = __doc__) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokenizer", required=True, help="folder written by the tokenizer recipe (tokenizer/)")
    p.add_argument("--data", default="huggan/anime-faces", help="the images (same forms as the tokenizer recipe)")
    p.add_argument("--output-dir", default="runs/prior-anime", help="where everything is written")
    p.add_argument("--preset", default="base", choices=sorted(PRESETS), help="transformer size (default: base)")
    p.add_argument("--resolution", type=int, default=None,
                   help="image size to encode at (default: the tokenizer's training resolution)")
    p.add_argument("--attributes", default="hair,eyes",
                   help="comma-separated tag columns to condition on; '' for none (default: %(default)s)")
    p.add_argument("--metadata", default=None,
                   help="JSON-lines labels (file_name + tag columns) replacing the data's own, e.g. corrected tags")
    p.add_argument("--class-column", default=None, help="an integer class column, for a class-conditional prior")
    p.add_argument("--class-names", default=None, help="comma-separated names of the classes 0..C-1")
    p.add_argument("--cond-dropout", type=float, default=0.1, help="probability of a null condition in training")
    p.add_argument("--batch-size", type=int, default=None, help="sequences per process per step (default: preset)")
    p.add_argument("--max-steps", type=int, default=10000, help="optimizer steps (default: %(default)s)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the preset's)")
    p.add_argument("--warmup-steps", type=int, default=100, help="linear warm-up steps (default: %(default)s)")
    p.add_argument("--weight-decay", type=float, default=0.05, help="AdamW weight decay (default: %(default)s)")
    p.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step (default: 1)")
    p.add_argument("--max-grad-norm", type=float, default=1.0, help="gradient clipping, 0 = off")
    p.add_argument("--mixed-precision", default="no", choices=["no", "bf16", "fp16"], help="autocast dtype")
    p.add_argument("--checkpoint-every", type=int, default=1000, help="steps between checkpoints")
    p.add_argument("--checkpoints-to-keep", type=int, default=3, help="newest checkpoints kept")
    p.add_argument("--sample-every", type=int, default=1000, help="steps between sample grids")
    p.add_argument("--sample-labels", default=None,
                   help="';'-separated conditions to sample, one grid row each (default: a few from the data)")
    p.add_argument("--cfg-scale", type=float, default=3.0, help="guidance scale of the sample grids")
    p.add_argument("--log-every", type=int, default=10, help="steps between metrics.jsonl lines")
    p.add_argument("--resume", default=None, help="'latest' or a checkpoint folder")
    p.add_argument("--seed", type=int, default=0, help="seed of weights and data order")
    p.add_argument("--num-workers", type=int, default=0, help="data loader workers per process")
    return p


def condition_of(row: dict, attributes: list[str], class_column: str | None):
    """A data row's condition as the prior takes it: a class id, a tag string, or None (null condition)."""
    if class_column:
        return int(row[class_column])
    tags = [f"{row[a]} {a}" for a in attributes if row.get(a)]
    return ",".join(tags) if tags else None


def prior_kwargs(args, info: dict, tokens, preset: dict, attributes: list[str]) -> dict:
    """The prior's constructor arguments: sizes from the preset, vocabulary from the tokens and their labels."""
    kwargs = {"vocab_size": info["codebook_size"], "seq_len": info["grid"][0] * info["grid"][1],
              "dim": preset["dim"], "depth": preset["depth"], "heads": preset["heads"],
              "cond_dropout": args.cond_dropout}
    if args.class_column:
        num_classes = int(max(tokens[args.class_column])) + 1
        kwargs["num_classes"] = num_classes
        if args.class_names:
            kwargs["class_names"] = args.class_names.split(",")
    elif attributes:
        kwargs["attributes"] = {a: sorted({v for v in tokens[a] if v}) for a in attributes}
    return kwargs


def default_sample_labels(args, kwargs: dict) -> list:
    if args.sample_labels:
        return [label or None for label in args.sample_labels.split(";")]
    if "class_names" in kwargs:
        return kwargs["class_names"]
    if "num_classes" in kwargs:
        return list(range(kwargs["num_classes"]))
    if "attributes" in kwargs:
        first, *_ = kwargs["attributes"]
        return [f"{value} {first}" for value in kwargs["attributes"][first][:6]]
    return [None]


def train(args) -> dict:
    output_dir = Path(args.output_dir)
    preset = dict(PRESETS[args.preset])
    batch_size, lr = args.batch_size or preset["batch_size"], args.lr or preset["lr"]
    accelerator = Accelerator(cpu=cpu_processes(), gradient_accumulation_steps=args.grad_accum,
                              mixed_precision=args.mixed_precision,
                              dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True,
                                                                        data_seed=args.seed))
    set_seed(args.seed)
    attributes = [a for a in args.attributes.split(",") if a] if not args.class_column else []

    # --- tokens: encode the images once, reuse them in every later run ---------------------------------------
    tokenizer = vqstack.Tokenizer.from_pretrained(args.tokenizer)
    resolution = args.resolution or tokenizer.config["encoder"]["kwargs"].get("resolution")
    if resolution is None:
        raise SystemExit("The tokenizer's config names no training resolution: pass --resolution.")
    tokens_dir = output_dir / "tokens"
    label_columns = [args.class_column] if args.class_column else attributes
    labels_from = {"file": str(args.metadata), "sha256": file_sha256(args.metadata)} if args.metadata else None
    if (tokens_dir / "tokens_info.json").is_file():
        tokens, info = load_token_dataset(tokens_dir)
        if (info.get("labels_from") or {}).get("sha256") != (labels_from or {}).get("sha256"):
            raise SystemExit(f"{tokens_dir} was encoded with labels from {info.get('labels_from') or 'the data'}, "
                             f"not {labels_from or 'the data'}: delete {tokens_dir} or choose another --output-dir.")
    else:
        with accelerator.main_process_first():
            images = load_image_dataset(args.data)
            if args.metadata:
                images = relabel(images, args.metadata)
        missing = [c for c in label_columns if c not in images.column_names]
        if missing:
            raise SystemExit(f"--data has no column {missing}; its columns: {', '.join(images.column_names)}.")
        tokens, info = encode_dataset(tokenizer, images, tokens_dir, resolution, accelerator, label_columns,
                                      source_tokenizer=str(args.tokenizer), image_size=resolution,
                                      labels_from=labels_from)
    tokenizer.to(accelerator.device)
    conditions = [condition_of(row, attributes, args.class_column) for row in tokens.select_columns(label_columns)] \
        if label_columns else [None] * len(tokens)
    sequences = torch.tensor(tokens["tokens"], dtype=torch.long)
    dataset = torch.utils.data.TensorDataset(sequences, torch.arange(len(sequences)))
    dataloader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True,
                                             num_workers=args.num_workers)

    # --- the prior ----------------------------------------------------------------------------------------------
    kwargs = prior_kwargs(args, info, tokens, preset, attributes)
    prior = vqstack.build("prior", "ar", **kwargs)
    decay, no_decay = [], []
    for name, param in prior.named_parameters():  # no weight decay on norms, biases and embeddings
        (no_decay if param.dim() < 2 or "embed" in name else decay).append(param)
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.95))
    scheduler = get_cosine_schedule_with_warmup(optimizer, args.warmup_steps, args.max_steps)
    prior, optimizer, dataloader = accelerator.prepare(prior, optimizer, dataloader)
    raw_prior = accelerator.unwrap_model(prior)
    state = TrainState()
    accelerator.register_for_checkpointing(state, scheduler)
    resume_from = resolve_resume(args.resume, output_dir)
    if resume_from is not None:
        accelerator.load_state(str(resume_from))
        accelerator.print(f"resumed from {resume_from} at step {state.step}")
    metrics_log = MetricsLog(output_dir / "metrics.jsonl", enabled=accelerator.is_main_process)
    sample_labels = default_sample_labels(args, kwargs)
    for label in sample_labels:  # an unknown label fails now, naming the known ones, not at the first sample grid
        raw_prior.condition_tokens(label, 1)
    hook().vqstack_on_train_start(config={**kwargs, "batch_size": batch_size, "lr": lr}, accelerator=accelerator)

    def sample_grid(step: int) -> None:
        """One row of 8 samples per condition, guided, with a fixed seed."""
        if not accelerator.is_main_process:
            return
        raw_prior.eval()
        rows = []
        generator = torch.Generator(accelerator.device).manual_seed(args.seed)
        for label in sample_labels:
            sampled = raw_prior.generate(8, labels=label, cfg_scale=args.cfg_scale if label is not None else 1.0,
                                         generator=generator)
            rows += to_pil(tokenizer.decode(sampled.view(-1, *info["grid"])))
        raw_prior.train()
        path = output_dir / "samples" / f"step-{step}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        make_grid_image(rows, columns=8).save(path)

    # --- the loop ------------------------------------------------------------------------------------------------
    progress = tqdm(total=args.max_steps, initial=state.step, disable=not accelerator.is_main_process, desc="prior")
    interval_start, interval_steps = time.perf_counter(), 0
    sequences_per_step = batch_size * accelerator.num_processes * args.grad_accum
    loss = torch.zeros(())
    while state.step < args.max_steps:
        dataloader.set_epoch(state.epoch)
        for batch_tokens, rows in accelerator.skip_first_batches(dataloader, state.batches_in_epoch):
            state.batches_in_epoch += 1
            labels = [conditions[i] for i in rows.tolist()] if label_columns else None
            with accelerator.accumulate(prior):
                loss = prior(batch_tokens, labels=labels).loss
                accelerator.backward(loss)
                if accelerator.sync_gradients and args.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(prior.parameters(), args.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            if not accelerator.sync_gradients:
                continue
            scheduler.step()  # once per optimizer step, whatever the number of processes
            state.step += 1
            state.images_seen += sequences_per_step
            interval_steps += 1
            progress.update(1)
            if hook().vqstack_on_step_end.get_hookimpls():
                hook().vqstack_on_step_end(step=state.step, logs={"loss": loss.item()})
            last = state.step == args.max_steps
            if state.step % args.log_every == 0 or last:
                mean_loss = accelerator.reduce(loss.detach().float(), "mean").item()
                elapsed = time.perf_counter() - interval_start
                metrics_log.write({"step": state.step, "loss": mean_loss, "lr": scheduler.get_last_lr()[0],
                                   "sequences_per_sec": interval_steps * sequences_per_step / max(elapsed, 1e-9)})
                progress.set_postfix(loss=f"{mean_loss:.4f}")
                interval_start, interval_steps = time.perf_counter(), 0
            if state.step % args.checkpoint_every == 0 or last:
                path = save_checkpoint(accelerator, output_dir, state.step, args.checkpoints_to_keep)
                if accelerator.is_main_process:
                    save_component(raw_prior, output_dir / "prior")
                hook().vqstack_on_checkpoint_saved(step=state.step, path=str(path))
            if state.step % args.sample_every == 0 or last:
                sample_grid(state.step)
            if last:
                break
        else:
            state.epoch += 1
            state.batches_in_epoch = 0
    progress.close()
    return {"accelerator": accelerator, "prior": raw_prior, "state": state, "loss": loss.detach().item(), "info": info}


def main(argv=None, parser: argparse.ArgumentParser | None = None) -> dict:
    args = (parser or build_parser()).parse_args(argv)
    result = train(args)
    result["accelerator"].end_training()
    return result


if __name__ == "__main__":
    main()
