"""Train a translator: a prior that paints a condition image (line art, grayscale, a low-resolution copy) into an
anime face, steered by hair and eye tags and, with --reference, by a reference picture's colours.

It is taming-transformers' conditional transformer on vqstack's priors: the condition image, made from each
training face on the fly, is read through a learned patch embedding on the token grid (ar: a prefix before the
image tokens; maskgit: added to each position), and the prior learns the face's tokens after it.

    # 1. a tokenizer (recipes/vqgan_anime.py writes runs/vqgan-anime/tokenizer)
    # 2. the translator: images encoded once into runs/translate-anime/tokens, line art drawn per sample
    accelerate launch recipes/translate_anime.py --tokenizer runs/vqgan-anime/tokenizer \
        --data ../shared/data/anime-faces --condition lineart --reference --output-dir runs/translate-anime
    # 3. paint a sketch (any size; RGB, RGBA or white-on-black), steered by tags and a reference picture
    vqstack translate --tokenizer runs/vqgan-anime/tokenizer --prior runs/translate-anime/prior \
        --image sketch.png --labels "green hair,blue eyes" --reference ref.png --n 4 --seed 0 --out out.png
    # 4. re-style a face without a mask
    vqstack edit --tokenizer runs/vqgan-anime/tokenizer --prior runs/translate-anime/prior \
        --image face.png --labels "green hair" --strength 0.5 --seed 0 --out out.png

Conditions and dropouts: --condition names a registered condition (lineart, grayscale, lowres, or a plugin's).
Line art takes a random style per sample and epoch (XDoG or Sobel, line thickness and threshold), seeded, so a
user's drawing, made by no one filter, is still in the training range. --image-dropout replaces the condition by
its null embedding and --cond-dropout / --group-dropout drop the tags, so guidance on the image, the tags or both
is trained. --reference adds the reference channels (vqstack/conditions/reference.py): the reference is the same
face after a flip, zoom, rotation and small warp, as style2paints trains it, so the prior learns to take colours
from it and not layout; --reference-dropout of the samples get none.

Held out: the last --eval-images images of the data are never trained on; their per-token NLL given their line art
(first draw, no reference) is logged as val_nll every --eval-every steps. Tokens are encoded and reused exactly as
recipes/prior_anime.py does (tokens/tokens_info.json records what they were made from).

Writes to --output-dir: tokens/, checkpoint-<step>/ (accelerate state: prior, optimizer, scheduler, RNG, step,
epoch and data position: --resume latest continues exactly), prior/ (config.json naming the condition, the
reference channels and the tokenizer's grid; model.safetensors; tokens_info.json naming the tokenizer),
samples/step-<N>.png (rows: condition, two samples with the face's own tags, a sample with another face as the
reference when --reference, the original) and metrics.jsonl.
"""
from __future__ import annotations

import argparse

import torch

import vqstack
from vqstack.conditions.pairs import ConditionedTokens
from vqstack.conditions.reference import with_reference
from vqstack.data import ImageDataset, load_image_dataset
from vqstack.data.token_cache import CACHE_FIELDS
from vqstack.data.tokens import source_rows
from vqstack.pipelines.images import make_grid_image, to_pil
from vqstack.priors import build_prior
from vqstack.training.loop import Trainer, add_loop_arguments
from vqstack.training.priors import PRESETS, condition_of, export_prior, prepare_tokens, validation_loss
from vqstack.training.runtime import UsageError, run_recipe, usage_errors


def build_parser(description: str = __doc__) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokenizer", required=True, help="folder written by the tokenizer recipe (tokenizer/)")
    p.add_argument("--data", default="huggan/anime-faces", help="the images (same forms as the tokenizer recipe)")
    p.add_argument("--condition", default="lineart",
                   help="registered condition the translator reads: lineart, grayscale, lowres or a plugin's "
                        "(default: %(default)s)")
    p.add_argument("--reference", action="store_true",
                   help="also learn to take colours from a reference picture (the same face, geometrically changed)")
    p.add_argument("--reference-dropout", type=float, default=0.5,
                   help="with --reference: probability a sample gets no reference (default: %(default)s)")
    p.add_argument("--preset", default="small", choices=sorted(PRESETS), help="transformer size (default: small)")
    p.add_argument("--prior", default="ar", help="registered prior: ar or a plugin's, e.g. maskgit (default: ar)")
    p.add_argument("--attributes", default="hair,eyes",
                   help="comma-separated tag columns to steer by; '' for none (default: %(default)s)")
    p.add_argument("--cond-dropout", type=float, default=0.1, help="probability of null tags in training")
    p.add_argument("--group-dropout", type=float, default=0.1, help="probability one tag group alone is dropped")
    p.add_argument("--image-dropout", type=float, default=0.1, help="probability of a null condition image")
    p.add_argument("--rebuild-tokens", action="store_true",
                   help="encode the images again even if --output-dir holds tokens/ from other inputs")
    p.add_argument("--eval-images", type=int, default=256,
                   help="the last N images, held out of training for val_nll and the grids (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=None, help="sequences per process per step (default: preset)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the preset's)")
    p.add_argument("--weight-decay", type=float, default=0.05, help="AdamW weight decay (default: %(default)s)")
    p.add_argument("--cfg-scale", type=float, default=5.0, help="guidance scale of the sample grids")
    return add_loop_arguments(p, output_dir="runs/translate-anime", max_steps=10000, warmup_steps=100,
                              eval_every=500, sample_every=1000, num_workers=0)


def load_tokenizer(args):
    tokenizer = vqstack.Tokenizer.from_pretrained(args.tokenizer)
    resolution = tokenizer.config["encoder"]["kwargs"].get("resolution")
    if resolution is None:
        raise UsageError("The tokenizer's config names no training resolution.")
    return tokenizer.eval().requires_grad_(False), int(resolution)


def split_held_out(image_rows: list[int], num_images: int, count: int) -> tuple[list[int], list[int]]:
    """(training token rows, held-out token rows): token rows encoding one of the last ``count`` images are held
    out, in data order."""
    if count < 1 or count >= num_images:
        raise UsageError(f"--eval-images must be in [1, {num_images - 1}] for {num_images} images, got {count}.")
    first_held = num_images - count
    train = [i for i, row in enumerate(image_rows) if row < first_held]
    held = [i for i, row in enumerate(image_rows) if row >= first_held]
    return train, held


def train(args) -> dict:
    preset = dict(PRESETS[args.preset])
    batch_size, lr = args.batch_size or preset["batch_size"], args.lr or preset["lr"]
    with usage_errors():  # a misspelt condition, a bad probability, a missing tokenizer: one line, exit 2
        condition = vqstack.build("condition", args.condition)
        if not 0 <= args.reference_dropout <= 1:
            raise UsageError(f"--reference-dropout must be in [0, 1], got {args.reference_dropout}.")
        tokenizer, resolution = load_tokenizer(args)
    trainer = Trainer(args, name="translate")
    accelerator, output_dir = trainer.accelerator, trainer.output_dir
    attributes = [a for a in args.attributes.split(",") if a]

    # --- tokens (encoded once), the images they encode, and the held-out split ----------------------------------
    with usage_errors():
        tokens, info = prepare_tokens(output_dir / "tokens", tokenizer, args.tokenizer, args.data, accelerator,
                                      resolution, attributes, rebuild=args.rebuild_tokens)
        with accelerator.main_process_first():
            images = ImageDataset(load_image_dataset(args.data), resolution, random_flip=False)
        image_rows = source_rows(tokens, info, output_dir / "tokens")
        train_rows, held_rows = split_held_out(image_rows, len(images), args.eval_images)
    tokenizer.to(trainer.device)
    conditions = [condition_of(row, attributes, None) for row in tokens.select_columns(attributes)] \
        if attributes else [None] * len(tokens)
    sequences = torch.tensor(tokens["tokens"], dtype=torch.long)
    if len(train_rows) < batch_size * accelerator.num_processes:
        raise UsageError(f"{len(train_rows)} training images cannot fill one batch of {batch_size} per process "
                         f"({accelerator.num_processes} processes): lower --batch-size or add images.")
    train_set = ConditionedTokens(sequences[train_rows], images, [image_rows[i] for i in train_rows], condition,
                                  args.reference, args.reference_dropout, args.seed)
    train_conditions = [conditions[i] for i in train_rows]
    dataloader = torch.utils.data.DataLoader(train_set, batch_size=batch_size, shuffle=True, drop_last=True,
                                             num_workers=args.num_workers,
                                             generator=torch.Generator().manual_seed(args.seed))
    # held out: tokens, tags, the original faces and their first line-art draw (no reference)
    held_set = ConditionedTokens(sequences[held_rows], images, [image_rows[i] for i in held_rows], condition,
                                 seed=args.seed)
    held_faces = torch.stack([images.pixels(row) for row in held_set.image_rows])
    held_images = torch.stack([held_set.condition_of(face, i, 0) for i, face in enumerate(held_faces)])
    if args.reference:
        held_images = with_reference(held_images)
    held_conditions = [conditions[i] for i in held_rows]

    # --- the translator -----------------------------------------------------------------------------------------
    kwargs = {"vocab_size": info["codebook_size"], "seq_len": info["grid"][0] * info["grid"][1],
              "dim": preset["dim"], "depth": preset["depth"], "heads": preset["heads"],
              "cond_dropout": args.cond_dropout, "image_condition": condition.to_config(),
              "image_dropout": args.image_dropout, "patch_size": tokenizer.downsample, "grid": list(info["grid"]),
              "reference": args.reference}
    if attributes:
        kwargs["group_dropout"] = args.group_dropout
        kwargs["attributes"] = {a: sorted({v for v in tokens[a] if v}) for a in attributes}
    with usage_errors():
        prior = build_prior(args.prior, **kwargs)
    decay, no_decay = [], []
    for name, param in prior.named_parameters():  # no weight decay on norms, biases and embeddings
        (no_decay if param.dim() < 2 or "embed" in name or name.endswith("null") else decay).append(param)
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.95))
    prior, optimizer, dataloader = trainer.prepare(prior, optimizer, dataloader)
    scheduler = trainer.schedule(optimizer)
    raw_prior = accelerator.unwrap_model(prior)
    trainer.begin({**kwargs, "prior": args.prior, "condition": args.condition, "batch_size": batch_size, "lr": lr},
                  run_key={**{name: info.get(name) for name in CACHE_FIELDS}, "image_condition": kwargs[
                      "image_condition"], "reference": args.reference},
                  mismatch=f"{{checkpoint}} was trained on other tokens or another condition than this run: start "
                           f"without --resume, or use another --output-dir.")

    def step(batch) -> tuple[bool, dict]:
        batch_tokens, index, image = batch
        labels = [train_conditions[i] for i in index.tolist()] if attributes else None
        loss = prior(batch_tokens, labels=labels, image=image).loss
        accelerator.backward(loss)
        return trainer.optimizer_step(optimizer, prior, what="prior"), {"loss": loss.detach()}

    def sample(step: int) -> None:
        """Rows: condition, two samples with the face's own tags, [a sample with the next face as reference],
        original; 8 held-out faces, guided, seeded."""
        raw_prior.eval()
        count = min(8, len(held_faces))
        labels = held_conditions[:count] if attributes else None
        image = held_images[:count].to(trainer.device)
        generator = torch.Generator(trainer.device).manual_seed(args.seed)
        grid = info["grid"]

        def paint(condition_images):
            out = raw_prior.generate(count, labels=labels, cfg_scale=args.cfg_scale, image=condition_images,
                                     generator=generator)
            return to_pil(tokenizer.decode(out.view(-1, *grid)))

        plain = image[:, :condition.channels]  # without the reference channels
        rows = to_pil(plain.expand(-1, 3, -1, -1) if condition.channels == 1 else plain) + paint(image) + paint(image)
        if args.reference:
            references = held_faces[:count].roll(1, 0).to(trainer.device)  # another face's colours
            rows += to_pil(references) + paint(with_reference(plain, references))
        rows += to_pil(held_faces[:count])
        raw_prior.train()
        path = output_dir / "samples" / f"step-{step}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        make_grid_image(rows, columns=count).save(path)

    def validate(step: int) -> dict:
        value = validation_loss(raw_prior, sequences[held_rows], held_conditions if attributes else None,
                                batch_size, accelerator, images=held_images)
        return {"val_nll" if getattr(raw_prior, "causal", False) else "val_masked_ce": value,
                "val_sequences": len(held_rows)}

    trainer.fit(dataloader, step, models=[prior], batch_size=batch_size, schedulers={"lr": scheduler},
                epoch_datasets=[train_set], export=lambda: export_prior(raw_prior, info, output_dir),
                evaluate=validate, sample=sample, throughput="sequences_per_sec")
    result = trainer.result(prior=raw_prior, info=info, tokenizer=tokenizer)
    result["loss"] = result["logs"].get("loss", 0.0)
    return result


def main(argv=None, parser: argparse.ArgumentParser | None = None) -> dict:
    args = (parser or build_parser()).parse_args(argv)
    result = train(args)
    result["accelerator"].end_training()
    return result


if __name__ == "__main__":
    run_recipe(main)
