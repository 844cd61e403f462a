"""Train an autoregressive prior over a trained tokenizer's tokens: anime faces by hair and eye colour.

    # 1. a tokenizer (recipes/vqgan_anime.py writes runs/vqgan-anime/tokenizer)
    # 2. the prior: the images are encoded once into runs/prior-anime/tokens, then the transformer trains on them
    accelerate launch recipes/prior_anime.py --tokenizer runs/vqgan-anime/tokenizer \
        --data ../shared/data/anime-faces --preset base --output-dir runs/prior-anime
    # 3. sample
    vqstack sample --tokenizer runs/vqgan-anime/tokenizer --prior runs/prior-anime/prior \
        --labels "blue hair,red eyes" --cfg-scale 3 --n 16 --seed 0 --out faces.png

Conditions: --attributes names metadata columns (default hair,eyes), read from the image folder's metadata.jsonl
or from --metadata FILE (same format, joined by file_name: your own tags for a read-only folder). Each image is
conditioned on the tags it has ("blue hair", "red eyes"), untagged images on the null condition. --cond-dropout
drops the whole condition and --group-dropout each attribute group on its own, so classifier-free guidance and
partial conditions ("blue hair" alone) are trained. --class-column trains a class-conditional prior instead
(recipes/prior_cifar10.py); --attributes "" an unconditional one.

The encoded tokens depend on the tokenizer's weights, the data, the resolution and the labels; all four are
recorded in tokens/tokens_info.json. A later run in the same --output-dir reuses tokens/ only when all of them
match, and otherwise stops and names what changed (--rebuild-tokens encodes again). A share of the images
(--val-fraction, fixed by --val-seed) is held out; its per-token NLL is logged as val_nll every --eval-every steps
(val_masked_ce, the masked-token cross-entropy, for a masked prior such as maskgit).

Writes to --output-dir: tokens/ (the encoded data set, reused by later runs), checkpoint-<step>/ (accelerate
state), prior/ (config.json + model.safetensors + tokens_info.json naming the tokenizer it was trained for),
samples/step-<N>.png (one row per condition) and metrics.jsonl.
"""
from __future__ import annotations

import argparse

import torch

import vqstack
from vqstack.data.token_cache import CACHE_FIELDS
from vqstack.pipelines.images import make_grid_image, to_pil
from vqstack.priors import build_prior
from vqstack.training.loop import Trainer, add_loop_arguments
from vqstack.training.priors import (PRESETS, class_sizes, condition_of, export_prior, prepare_tokens,
                                     split_validation, validation_loss)
from vqstack.training.runtime import UsageError, run_recipe, usage_errors



def build_parser(description: str = __doc__) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokenizer", required=True, help="folder written by the tokenizer recipe (tokenizer/)")
    p.add_argument("--data", default="huggan/anime-faces", help="the images (same forms as the tokenizer recipe)")
    p.add_argument("--preset", default="base", choices=sorted(PRESETS), help="transformer size (default: base)")
    p.add_argument("--prior", default="ar",
                   help="registered prior: ar (autoregressive, built in) or a plugin's, e.g. maskgit from "
                        "plugins/vqstack-maskgit; the same sizes and conditions (default: %(default)s)")
    p.add_argument("--resolution", type=int, default=None,
                   help="image size to encode at (default: the tokenizer's training resolution)")
    p.add_argument("--attributes", default="hair,eyes",
                   help="comma-separated tag columns to condition on; '' for none (default: %(default)s)")
    p.add_argument("--metadata", default=None,
                   help="JSON-lines labels (file_name + tag columns) replacing the data's own, e.g. your own tags")
    p.add_argument("--new-tags", action="store_true",
                   help="accept --metadata tags that the data's own columns never use (default: refuse them, "
                        "as typos or swapped columns)")
    p.add_argument("--rebuild-tokens", action="store_true",
                   help="encode the images again even if --output-dir holds tokens/ from other inputs")
    p.add_argument("--class-column", default=None, help="an integer class column, for a class-conditional prior")
    p.add_argument("--class-names", default=None, help="comma-separated names of the classes 0..C-1")
    p.add_argument("--cond-dropout", type=float, default=0.1, help="probability of a null condition in training")
    p.add_argument("--group-dropout", type=float, default=0.1,
                   help="probability that one attribute group alone is dropped to null (partial conditions)")
    p.add_argument("--val-fraction", type=float, default=0.01,
                   help="share of the images held out for validation NLL (default: %(default)s; 0 = none)")
    p.add_argument("--val-seed", type=int, default=0, help="seed of the held-out split (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=None, help="sequences per process per step (default: preset)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the preset's)")
    p.add_argument("--weight-decay", type=float, default=0.05, help="AdamW weight decay (default: %(default)s)")
    p.add_argument("--sample-labels", default=None,
                   help="';'-separated conditions to sample, one grid row each (default: a few from the data)")
    p.add_argument("--cfg-scale", type=float, default=3.0, help="guidance scale of the sample grids")
    # --eval-every: steps between validation-loss lines
    return add_loop_arguments(p, output_dir="runs/prior-anime", max_steps=10000, warmup_steps=100, eval_every=500,
                              sample_every=1000, num_workers=0)


def prior_kwargs(args, info: dict, tokens, preset: dict, attributes: list[str]) -> dict:
    """The prior's constructor arguments: sizes from the preset, vocabulary from the tokens and their labels."""
    kwargs = {"vocab_size": info["codebook_size"], "seq_len": info["grid"][0] * info["grid"][1],
              "dim": preset["dim"], "depth": preset["depth"], "heads": preset["heads"],
              "cond_dropout": args.cond_dropout}
    if attributes:
        kwargs["group_dropout"] = args.group_dropout
    if args.class_column:
        kwargs.update(class_sizes(args.class_names, tokens[args.class_column]))
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
    preset = dict(PRESETS[args.preset])
    batch_size, lr = args.batch_size or preset["batch_size"], args.lr or preset["lr"]
    trainer = Trainer(args, name="prior")
    accelerator, output_dir = trainer.accelerator, trainer.output_dir
    attributes = [a for a in args.attributes.split(",") if a] if not args.class_column else []
    label_columns = [args.class_column] if args.class_column else attributes

    # --- tokens: encode the images once, reuse them while the inputs are unchanged -------------------------------
    with usage_errors():
        tokenizer = vqstack.Tokenizer.from_pretrained(args.tokenizer)
        resolution = args.resolution or tokenizer.config["encoder"]["kwargs"].get("resolution")
        if resolution is None:
            raise UsageError("The tokenizer's config names no training resolution: pass --resolution.")
        tokens, info = prepare_tokens(output_dir / "tokens", tokenizer, args.tokenizer, args.data, accelerator,
                                      resolution, label_columns, args.metadata, args.new_tags, args.rebuild_tokens)
    tokenizer.to(trainer.device)
    conditions = [condition_of(row, attributes, args.class_column) for row in tokens.select_columns(label_columns)] \
        if label_columns else [None] * len(tokens)
    sequences = torch.tensor(tokens["tokens"], dtype=torch.long)
    train_rows, val_rows = split_validation(len(sequences), args.val_fraction, args.val_seed)
    if len(train_rows) < batch_size * accelerator.num_processes:
        raise UsageError(f"{len(train_rows)} training sequences cannot fill one batch of {batch_size} per process "
                         f"({accelerator.num_processes} processes): lower --batch-size or add images.")
    dataset = torch.utils.data.TensorDataset(sequences[train_rows], train_rows)
    # its own generator, so making an iterator (one more in a resumed run) leaves the global RNG, which draws the
    # condition dropout, where the run it continues had it
    dataloader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True,
                                             num_workers=args.num_workers,
                                             generator=torch.Generator().manual_seed(args.seed))
    val_sequences, val_conditions = sequences[val_rows], [conditions[i] for i in val_rows.tolist()]

    # --- the prior ----------------------------------------------------------------------------------------------
    with usage_errors():
        kwargs = prior_kwargs(args, info, tokens, preset, attributes)
        prior = build_prior(args.prior, **kwargs)  # only the arguments this prior takes
        sample_labels = default_sample_labels(args, kwargs)
        for label in sample_labels:  # an unknown label fails now, naming the known ones, not at the first grid
            prior.condition_tokens(label, 1)
    decay, no_decay = [], []
    for name, param in prior.named_parameters():  # no weight decay on norms, biases and embeddings
        (no_decay if param.dim() < 2 or "embed" in name else decay).append(param)
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.95))
    prior, optimizer, dataloader = trainer.prepare(prior, optimizer, dataloader)
    scheduler = trainer.schedule(optimizer)
    raw_prior = accelerator.unwrap_model(prior)
    trainer.begin({**kwargs, "prior": args.prior, "batch_size": batch_size, "lr": lr},
                  run_key={name: info.get(name) for name in CACHE_FIELDS},
                  mismatch=f"{{checkpoint}} was trained on tokens from other inputs than {output_dir / 'tokens'} now "
                           f"holds (re-encoded?): start without --resume, or use another --output-dir.")

    def step(batch) -> tuple[bool, dict]:
        batch_tokens, rows = batch
        labels = [conditions[i] for i in rows.tolist()] if label_columns else None
        loss = prior(batch_tokens, labels=labels).loss
        accelerator.backward(loss)
        return trainer.optimizer_step(optimizer, prior, what="prior"), {"loss": loss.detach()}

    def sample(step: int) -> None:
        """One row of 8 samples per condition, guided, with a fixed seed."""
        raw_prior.eval()
        rows = []
        generator = torch.Generator(trainer.device).manual_seed(args.seed)
        for label in sample_labels:
            sampled = raw_prior.generate(8, labels=label, cfg_scale=args.cfg_scale if label is not None else 1.0,
                                         generator=generator)
            rows += to_pil(tokenizer.decode(sampled.view(-1, *info["grid"])))
        raw_prior.train()
        path = output_dir / "samples" / f"step-{step}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        make_grid_image(rows, columns=8).save(path)

    val_name = "val_nll" if getattr(raw_prior, "causal", False) else "val_masked_ce"

    def validate(step: int) -> dict | None:
        if len(val_sequences):
            value = validation_loss(raw_prior, val_sequences, val_conditions, batch_size, accelerator)
            return {val_name: value, "val_sequences": len(val_sequences)}
        return None

    trainer.fit(dataloader, step, models=[prior], batch_size=batch_size, schedulers={"lr": scheduler},
                export=lambda: export_prior(raw_prior, info, output_dir), evaluate=validate, sample=sample,
                throughput="sequences_per_sec")
    result = trainer.result(prior=raw_prior, info=info)
    result["loss"] = result["logs"].get("loss", 0.0)
    return result


def main(argv=None, parser: argparse.ArgumentParser | None = None) -> dict:
    args = (parser or build_parser()).parse_args(argv)
    result = train(args)
    result["accelerator"].end_training()
    return result


if __name__ == "__main__":
    run_recipe(main)
