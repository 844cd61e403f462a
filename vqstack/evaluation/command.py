"""``vqstack eval``: one process, or several under ``accelerate launch`` (each takes a contiguous shard of the
images, or every num_processes-th chunk of samples, and the metrics sum their states across processes), so N
processes report what one process reports. Only the main process prints and writes the JSON.

Three evaluations: a tokenizer's reconstructions (--tokenizer), a prior's samples drawn now (--tokenizer --prior),
or a folder of samples drawn before (--samples DIR, vqstack/evaluation/samples_folder.py)."""
from __future__ import annotations

from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..data.images import ImageDataset, describe_source, load_image_dataset
from ..data.labels import parse_labels
from ..data.tokens import INFO_NAME, load_token_dataset
from .attributes import attribute_classifier, attribute_confusion, attribute_report, attribute_tables, column_tags
from .catalog import (DEFAULT_METRICS, METRICS, PRIOR, TOKENIZER, attribute_columns, known_names, metric_of,
                      parse_metrics)
from .report import format_table, make_record, saved_component, write_json
from .suite import required_weights
from .tokenizer_info import tokenizer_resolution

DEFAULT_NUM_SAMPLES = 1000  # --num-samples when eval samples itself (with --samples: the whole folder)
# eval's sampling options and their defaults: the JSON's "sampling", and what --samples refuses when changed
SAMPLING_DEFAULTS = {"labels": None, "cfg_scale": 1.0, "seed": 0, "temperature": 1.0, "top_k": None, "top_p": None,
                     "steps": None}


def run(args) -> int:
    samples = getattr(args, "samples", None) is not None
    mode = PRIOR if args.prior or samples else TOKENIZER
    token_data = is_token_dataset(args.data)
    # --samples checks the metrics' modes itself: "drop --prior" would make no sense there
    requests = parse_metrics(requested_metrics(args.metrics, mode, token_data and args.prior is not None),
                             args.features, None if samples else mode)
    check_options(args, mode, requests, token_data)
    required_weights(requests, {}, args.fid_weights, args.lpips_weights, args.lpips_net)  # first: fail before any work

    from accelerate import Accelerator

    from ..training.runtime import cpu_processes

    accelerator = Accelerator(cpu=cpu_processes())  # several CPU processes: one gloo group, not N unrelated jobs
    evaluate = evaluate_prior if mode == PRIOR else evaluate_reconstructions
    values, networks, context = evaluate(args, requests, accelerator)
    if accelerator.is_main_process:
        record = make_record(values, networks, **context)
        print(format_table(values, networks))
        for table in attribute_tables(record):
            print(table)
        if args.json:
            print(f"-> {write_json(record, args.json)}")
    accelerator.wait_for_everyone()
    return 0


def is_token_dataset(data: str) -> bool:
    return (Path(data).expanduser() / INFO_NAME).is_file()


def requested_metrics(metrics: str | None, mode: str, token_data: bool) -> str:
    """``--metrics`` or the defaults; a prior evaluated on a token dataset always reports its nll too."""
    return (metrics or DEFAULT_METRICS[mode]) + (",nll" if token_data and mode == PRIOR else "")


def check_options(args, mode: str, requests, token_data: bool) -> None:
    """One clear error per option that does not fit this evaluation."""
    for option in ("limit", "batch_size", "num_samples", "resolution"):
        value = getattr(args, option)
        if value is not None and value < 1:
            raise ValueError(f"--{option.replace('_', '-')} must be a positive int, got {value}.")
    samples = getattr(args, "samples", None)
    if samples is None and args.tokenizer is None:
        raise ValueError("--tokenizer DIR is needed: a tokenizer evaluation reconstructs with it and a prior "
                         "evaluation samples with it; only --samples DIR (a folder of images to score) goes without.")
    if mode == PRIOR and args.resolution is not None:
        raise ValueError("--resolution is for tokenizer evaluations; a prior's samples and the reference images "
                         "take the pipeline's image size (with --samples: the folder's image size).")
    if samples is not None:
        check_samples_options(args, requests)
    if mode == TOKENIZER and token_data:
        raise ValueError(f"--data {args.data} is a token dataset; a tokenizer evaluation needs images (a token "
                         f"dataset serves a prior evaluation: add --prior DIR).")
    if any(r.metric == "nll" for r in requests) and not token_data:
        raise ValueError(f"nll scores a token dataset, but --data {args.data} has no {INFO_NAME}: pass the tokens/ "
                         f"folder a prior recipe wrote (recipes/prior_anime.py --output-dir .../tokens).")


def check_samples_options(args, requests) -> None:
    """--samples scores a folder's images: sampling options would be ignored, so they are refused; a tokenizer
    metric has nothing to measure, and a metric of the prior itself (nll) needs --prior."""
    changed = [f"--{name.replace('_', '-')}" for name, default in SAMPLING_DEFAULTS.items()
               if getattr(args, name) != default]
    if changed:
        raise ValueError(f"{', '.join(changed)}: sampling options, but with --samples {args.samples} the images come "
                         f"from the folder (its samples.json records how they were sampled); drop them.")
    choices = ", ".join(image_metric_names())
    for request in requests:
        info = METRICS[request.metric]
        if PRIOR not in info.modes:
            raise ValueError(f"Metric {request.key!r} measures a tokenizer (its reconstructions or tokens), not "
                             f"samples; with --samples choose from {choices} (and nll with --prior).")
        if info.role != "sets" and args.prior is None:
            raise ValueError(f"Metric {request.key!r} scores the prior itself ({info.summary}), and --samples "
                             f"{args.samples} gives only images: add --prior DIR, or choose from the image metrics "
                             f"{choices}.")


def image_metric_names() -> list[str]:
    """The prior metrics computed from images alone (against the reference images): what --samples can score."""
    return [name for name in known_names()
            if METRICS[metric_of(name)].role == "sets" and PRIOR in METRICS[metric_of(name)].modes]


def reference_cache_on(args) -> bool:
    """Whether the real images' features come from the reference cache: unless ``--no-reference-cache``
    (``args.reference_cache`` False) or $VQSTACK_NO_REFERENCE_CACHE is set."""
    from .reference import cache_enabled

    return getattr(args, "reference_cache", True) is not False and cache_enabled()


def suite_options(args) -> dict:
    return {"features": args.features, "fid_weights": args.fid_weights, "lpips_weights": args.lpips_weights,
            "lpips_net": args.lpips_net, "k": args.k}


# --- data -------------------------------------------------------------------------------------------------------


def load_images(data: str, split: str, accelerator):
    """The 🤗 dataset behind ``data``."""
    with accelerator.main_process_first():  # the first process builds the datasets cache, the others reuse it
        return load_image_dataset(str(data), split=split)


def first(images, limit: int | None):
    """The first ``limit`` rows of ``images`` (all when None)."""
    return images.select(range(min(limit, len(images)))) if limit else images


def image_batches(images, resolution: int, args, accelerator, desc: str):
    """This process's contiguous shard of ``images``, center-cropped to ``resolution`` (no flips), in batches."""
    shard = images.shard(num_shards=accelerator.num_processes, index=accelerator.process_index, contiguous=True)
    loader = torch.utils.data.DataLoader(ImageDataset(shard, resolution, random_flip=False),
                                         batch_size=args.batch_size, num_workers=args.num_workers)
    return tqdm(loader, desc=desc, disable=not accelerator.is_main_process)


def cached_reference_side(suite, dataset, images, data: str, resolution: int, args, accelerator) -> dict | None:
    """The real side of ``suite``'s Fréchet distances and precision/recall for ``images`` (the first rows of
    ``dataset``, loaded from ``data``) at ``resolution``: {features name: ReferenceFeatures} from the reference cache,
    or computed now in one pass (each process its shard) and cached by the main process, which says which. None when
    the suite needs none or the cache is off: the real images are then fed to the metrics as they come."""
    if suite is None or not suite.reference_networks or not reference_cache_on(args):
        return None
    from .reference import cached_references

    suite.to(accelerator.device)
    networks = {name: suite.feature_networks[name] for name in suite.reference_networks}
    references = cached_references(networks, data=str(data), dataset=dataset, rows=range(len(images)),
                                   resolution=resolution, split=args.split, device=accelerator.device,
                                   batches=lambda: image_batches(images, resolution, args, accelerator,
                                                                 "reference features"))
    if accelerator.is_main_process:
        for reference in references.values():
            print(reference.describe())
    return references


def reference_record(references: dict | None) -> dict:
    """The report's "reference_cache": the cache folder of each network's reference features (None: not cached)."""
    return {"reference_cache": {name: ref.info.get("path") for name, ref in references.items()}} if references else {}


# --- tokenizer --------------------------------------------------------------------------------------------------


def evaluate_reconstructions(args, requests, accelerator):
    from ..tokenizer import Tokenizer
    from .reconstruction import evaluate_tokenizer, tokenizer_suite

    # loaded on the CPU, then moved: safetensors refuses the "cpu:1" devices of multi-process CPU runs
    tokenizer = Tokenizer.from_pretrained(args.tokenizer).to(accelerator.device)
    resolution = tokenizer_resolution(tokenizer, args.resolution)
    dataset = load_images(args.data, args.split, accelerator)
    tags = [column_tags(dataset, column) for column in attribute_columns(requests)]  # a bad column fails first
    names = [request.key for request in requests if request.metric != "attr"]
    values, networks = {}, {}
    context = {"resolution": resolution, "data": describe_source(str(args.data)),
               "tokenizer": saved_component(args.tokenizer)}
    if names:
        suite = tokenizer_suite(tokenizer, names, **suite_options(args))
        images = first(dataset, args.limit)
        references = cached_reference_side(suite, dataset, images, args.data, resolution, args, accelerator)
        values = evaluate_tokenizer(tokenizer, image_batches(images, resolution, args, accelerator, "eval"), suite,
                                    references=references)
        networks, context["images"] = suite.networks, len(images)
        context.update(reference_record(references))
    for attribute in tags:
        report = score_attribute(args, tokenizer, dataset, attribute, resolution, accelerator)
        values.update(report.values)
        context.update({key: value for key, value in report.record().items() if key not in report.values})
    return values, networks, context


def score_attribute(args, tokenizer, dataset, tags, resolution: int, accelerator):
    """attr:<column>: the classifier (trained by the main process and cached in $VQSTACK_CACHE, never in the
    tokenizer folder, then loaded by the others), scored on every process's share of the held-out images."""
    with accelerator.main_process_first():
        classifier, info = attribute_classifier(dataset, tags, args.data, resolution, split=args.split,
                                                device=accelerator.device)
    confusion = attribute_confusion(tokenizer, classifier, dataset, tags, resolution, limit=args.limit,
                                    batch_size=args.batch_size, rank=accelerator.process_index,
                                    world=accelerator.num_processes)
    return attribute_report(tags, confusion, info)


# --- prior ------------------------------------------------------------------------------------------------------


def evaluate_prior(args, requests, accelerator):
    """A prior's samples (drawn now, or read from --samples) against the reference images, and nll."""
    from .generation import evaluate_samples
    from .suite import build_suite

    names = [request.key for request in requests]
    image_names = [name for name in names if name != "nll"]
    suite = build_suite(image_names, **suite_options(args)) if image_names else None
    side = folder_side if getattr(args, "samples", None) is not None else sampling_side
    batches, size, prior, context = side(args, accelerator, need_prior="nll" in names)
    values, networks = {}, {}
    if suite is not None:
        resolution = square_side(size, context)
        source = reference_source(args.data)
        dataset = load_images(source, args.split, accelerator)
        images = first(dataset, args.limit)
        references = cached_reference_side(suite, dataset, images, source, resolution, args, accelerator)
        if references is None:  # no cache: the metrics read the images themselves
            references = image_batches(images, resolution, args, accelerator, "reference")
        # the samples' bar starts only now, after the reference features: its rate is the samples' own
        values.update(evaluate_samples(batches(), references, suite, device=accelerator.device))
        networks = suite.networks
        context.update(images=len(images), resolution=resolution, data=describe_source(source))
        context.update(reference_record(references if isinstance(references, dict) else None))
    if "nll" in names:
        values["nll"], context["sequences"] = validation_nll(prior, args, accelerator)
        context["tokens"] = describe_source(str(args.data))
    return values, networks, context


def sampling_side(args, accelerator, need_prior: bool):
    """(a function giving the sample batches the pipeline draws, their (height, width), the prior (loaded either
    way: the pipeline needs it), the record's context)."""
    from ..pipelines.generation import Pipeline

    pipe = Pipeline.from_pretrained(args.tokenizer, args.prior)  # on the CPU first, as for the tokenizer
    pipe.tokenizer.to(accelerator.device), pipe.prior.to(accelerator.device)
    n = args.num_samples or DEFAULT_NUM_SAMPLES
    context = {"samples": n, "sampling": sampling_record(args), "tokenizer": saved_component(args.tokenizer),
               "prior": saved_component(args.prior)}
    return lambda: sample_batches(pipe, n, args, accelerator), pipe.image_size, pipe.prior, context


def folder_side(args, accelerator, need_prior: bool):
    """(a function giving the batches of the --samples folder's images, their (height, width), the prior when
    ``need_prior``, the record's context): the folder and the stages given are checked against its samples.json
    before any work."""
    from ..core.serialization import load_component
    from .samples_folder import check_stage, folder_batches, open_samples

    folder = open_samples(args.samples, args.num_samples)
    context = {"samples": len(folder.files), "samples_folder": folder.describe()}
    for option, directory in (("--tokenizer", args.tokenizer), ("--prior", args.prior)):
        if directory is not None:
            check_stage(folder, option, directory, f"{option[2:]}_sha256")
            context[option[2:]] = saved_component(directory)
    prior = load_component(args.prior, kind="prior").to(accelerator.device) if need_prior else None

    def batches():
        loader = folder_batches(folder, args.batch_size, rank=accelerator.process_index,
                                world=accelerator.num_processes, num_workers=args.num_workers)
        return tqdm(loader, desc="samples", disable=not accelerator.is_main_process)

    return batches, folder.size, prior, context


def square_side(size: tuple[int, int], context: dict) -> int:
    """The side of square samples: reference images are center-cropped squares."""
    height, width = size
    if height != width:
        made = (f"--samples {context['samples_folder']['path']} holds" if "samples_folder" in context
                else "The pipeline makes")
        raise ValueError(f"{made} {height}x{width} images; reference images are center-cropped squares, so only "
                         f"square images are evaluated.")
    return height


def reference_source(data: str) -> str:
    """The reference images: ``data``, or for a token dataset the images it was encoded from."""
    if not is_token_dataset(data):
        return data
    _, info = load_token_dataset(data)
    source = info.get("data")
    if not source or not Path(source).exists():
        raise ValueError(f"{data} records no readable source images ({INFO_NAME} 'data': {source!r}); pass the "
                         f"image folder as --data for image metrics, or ask for --metrics nll alone.")
    return source


def sample_batches(pipe, n: int, args, accelerator):
    from .generation import sample_images

    chunks = -(-n // args.batch_size)
    mine = len(range(accelerator.process_index, chunks, accelerator.num_processes))
    samples = sample_images(pipe, n, sample_labels(args.labels), batch_size=args.batch_size,
                            seed=args.seed, rank=accelerator.process_index, world=accelerator.num_processes,
                            cfg_scale=args.cfg_scale, temperature=args.temperature, top_k=args.top_k,
                            top_p=args.top_p, steps=args.steps)
    return tqdm(samples, total=mine, desc="samples", disable=not accelerator.is_main_process)


def sample_labels(text: str | None):
    """``--labels``: one label for every sample, or several separated by ";" taken in turn."""
    if text is None or ";" not in text:
        return parse_labels(text)
    return [parse_labels(part) if part.strip() else None for part in text.split(";")]


def sampling_record(args) -> dict:
    return {name: getattr(args, name) for name in SAMPLING_DEFAULTS}


def validation_nll(prior, args, accelerator) -> tuple[float, int]:
    """(mean per-token NLL of the token dataset's sequences, how many) with each process scoring a shard."""
    from .generation import sequence_labels, token_nll

    tokens, info = load_token_dataset(args.data)
    if args.limit:
        tokens = tokens.select(range(min(args.limit, len(tokens))))
    shard = tokens.shard(num_shards=accelerator.num_processes, index=accelerator.process_index, contiguous=True)
    sequences = torch.tensor(shard["tokens"], dtype=torch.long).reshape(len(shard), -1)
    labels = sequence_labels(prior, shard, info.get("label_columns") or [])
    return token_nll(prior, sequences, labels, batch_size=args.batch_size), len(tokens)
