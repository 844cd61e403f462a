"""The ``vqstack`` command line."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# Only what builds the parser and reports errors is imported here (no torch: `vqstack --help` stays fast); each
# command imports what it runs.
from .core import KIND_HOOKS, plugins_info, registry
from .core.plugins import DISABLE_ENV, PluginLoadError
from .core.registry import UnknownComponentError

DEVICE_HELP = "torch device (default: cuda if present)"


def __getattr__(name: str):
    if name == "parse_labels":  # vqstack.cli.parse_labels, the function every command reads --labels with
        from .data.labels import parse_labels

        return parse_labels
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def cmd_plugins(args) -> int:
    """List every plugin, its distribution and version, and what it registered (or why it failed)."""
    if args.kind and not args.check:
        raise ValueError("--kind selects the components --check checks; add --check.")
    info = plugins_info()
    if args.check:
        return check_plugins(info, args.kind, args.json)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    for plugin in info:
        version = f" {plugin['version']}" if plugin["version"] else ""
        print(f"{plugin['name']}  ({plugin['distribution']}{version})")
        if plugin["error"]:
            print(f"    FAILED, skipped: {plugin['error']} (block it with {DISABLE_ENV}={plugin['name']})")
            continue
        for kind, names in plugin["components"].items():
            print(f"    {kind}: {', '.join(names)}")
        if not plugin["components"]:
            print("    (registers no components)")
    return 0


def check_plugins(info: list[dict], kind: str | None, as_json: bool) -> int:
    """Run the conformance checks on every registered component (of ``kind``): one line each as it goes, then a
    summary (or one JSON document); 1 when a component or a plugin failed."""
    from .conformance import check_registered

    say = (lambda line: None) if as_json else (lambda line: print(line, flush=True))
    broken = [p for p in info if p["error"]]
    for plugin in broken:
        say(f"plugin {plugin['name']} ({plugin['distribution']} {plugin['version']}): FAILED: {plugin['error']}")
    results = []
    for kind_name in [kind] if kind else KIND_HOOKS:
        for result in check_registered([kind_name]):
            status = "FAILED" if result.status == "failed" else result.status
            reason = f": {result.reason}" if result.reason else ""
            say(f"{result.kind} {result.name} ({result.plugin}): {status}{reason}")
            results.append(result)
    counts = {status: sum(r.status == status for r in results) for status in ("ok", "failed", "skipped")}
    say(f"{len(results)} components checked: {counts['ok']} ok, {counts['failed']} failed, {counts['skipped']} "
        f"skipped; {len(broken)} plugins failed to load.")
    if as_json:
        print(json.dumps({"components": [r.as_dict() for r in results], "failed_plugins": broken}, indent=2))
    return 1 if counts["failed"] or broken else 0


def cmd_components(args) -> int:
    """List registered component names by kind."""
    for kind in [args.kind] if args.kind else KIND_HOOKS:
        reg = registry(kind)
        print(f"{kind}: {', '.join(reg.names()) or '(none)'}")
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo

    return run_demo(data=args.data, quantizer=args.quantizer, resolution=args.resolution, batch=args.batch)


def cmd_sample(args) -> int:
    """Sample images with a trained tokenizer and prior: one grid (--out), or one PNG per image in a folder
    (--out-dir), in batches, resumable."""
    if args.out_dir is not None:
        return sample_to_folder(args)
    for option, value in (("--batch-size", args.batch_size), ("--overwrite", args.overwrite or None)):
        if value is not None:
            raise ValueError(f"{option} is for --out-dir (one PNG per image); the grid of --out takes no {option}.")
    from .data.labels import parse_labels
    from .pipelines.generation import Pipeline
    from .pipelines.images import make_grid_image

    out = args.out if args.out is not None else Path("samples.png")
    pipe = Pipeline.from_pretrained(args.tokenizer, args.prior, device=args.device)
    images = pipe(args.n, labels=parse_labels(args.labels), cfg_scale=args.cfg_scale, seed=args.seed,
                  temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, steps=args.steps)
    make_grid_image(images, columns=args.columns).save(out)
    print(f"{len(images)} images of {images[0].size[0]}x{images[0].size[1]} -> {out}")
    return 0


def sample_to_folder(args) -> int:
    """``vqstack sample --out-dir``: vqstack/pipelines/folders.py; Ctrl-C ends in one line saying how to resume."""
    if args.out is not None:
        raise ValueError(f"--out {args.out} (one grid) and --out-dir {args.out_dir} (one PNG per image) exclude "
                         f"each other; give one.")
    if args.columns is not None:
        raise ValueError("--columns lays out the grid of --out; --out-dir writes one PNG per image.")
    from .pipelines.folders import count_done, sample_folder

    try:
        result = sample_folder(args.tokenizer, args.prior, args.out_dir, args.n,
                               batch_size=64 if args.batch_size is None else args.batch_size, labels=args.labels,
                               cfg_scale=args.cfg_scale, temperature=args.temperature, top_k=args.top_k,
                               top_p=args.top_p, steps=args.steps, seed=args.seed, device=args.device,
                               overwrite=args.overwrite)
    except KeyboardInterrupt:
        print(f"vqstack sample: interrupted with {count_done(args.out_dir, args.n)} of {args.n} images in "
              f"{args.out_dir}; run the same command again to resume.", file=sys.stderr)
        return 130
    if result.image_size is None:
        print(f"all {result.n} images already in {result.out_dir}; nothing to do.")
    else:
        width, height = result.image_size
        print(f"{result.n} images of {width}x{height} in {result.out_dir}: {result.written} sampled in "
              f"{result.seconds:.1f} s ({result.images_per_second:.2f} images/s), {result.kept} there before.")
    return 0


def cmd_inpaint(args) -> int:
    """Repair the masked part of an image: re-sample its tokens with the prior, keep the original pixels elsewhere."""
    from PIL import Image

    from .data.labels import parse_labels
    from .pipelines.generation import Pipeline

    pipe = Pipeline.from_pretrained(args.tokenizer, args.prior, device=args.device)
    with Image.open(args.image) as image, Image.open(args.mask) as mask:
        repaired = pipe.inpaint(image, mask, labels=parse_labels(args.labels), cfg_scale=args.cfg_scale,
                                seed=args.seed, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                                candidates=args.candidates, steps=args.steps)
    repaired.save(args.out)
    print(f"repaired image -> {args.out}")
    return 0


def cmd_outpaint(args) -> int:
    """Grow an image beyond its border: the prior draws the new tokens, the original pixels stay inside."""
    from PIL import Image

    from .data.labels import parse_labels
    from .pipelines.generation import Pipeline
    from .pipelines.outpainting import parse_extend

    extend = parse_extend(args.extend)
    pipe = Pipeline.from_pretrained(args.tokenizer, args.prior, device=args.device)
    with Image.open(args.image) as image:
        grown = pipe.outpaint(image, extend, labels=parse_labels(args.labels), cfg_scale=args.cfg_scale,
                              seed=args.seed, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                              steps=args.steps)
    grown.save(args.out)
    print(f"{grown.size[0]}x{grown.size[1]} image -> {args.out}")
    return 0


def cmd_eval(args) -> int:
    """Measure a tokenizer's reconstructions, or a prior's samples, and write the values as JSON."""
    from .evaluation.command import run

    return run(args)


def cmd_degrade(args) -> int:
    """Degrade an image, or every image of a folder (same file names in --out), to make restoration test inputs."""
    from .data.degradations import degrade_files, parse_spec

    degradation = parse_spec(args.spec)
    count = degrade_files(degradation, args.image, args.out, seed=args.seed)
    print(f"{count} image{'s' * (count != 1)} degraded with {degradation} -> {args.out}")
    return 0


def cmd_restore(args) -> int:
    """Restore a degraded image, or every image of a folder (same file names in --out), with a tokenizer and the
    restorer trained for it."""
    from .pipelines.restoration import run_restore

    count, seconds = run_restore(args.tokenizer, args.restorer, args.image, args.out, fidelity=args.fidelity,
                                 upscale=args.upscale, device=args.device, batch_size=args.batch_size)
    scale = f", upscale x{args.upscale}" if args.upscale is not None else ""
    print(f"{count} image{'s' * (count != 1)} restored (fidelity {args.fidelity:g}{scale}) in {seconds:.3f} s per "
          f"image on {args.device} -> {args.out}")
    return 0


def single_image_out(image: Path, out: Path, what: str = "a drawing") -> Path:
    """The file ``--out`` names for one ``--image`` file (into an existing folder: the image's name), checked before
    any model is loaded."""
    from .pipelines.files import image_pairs

    if image.is_dir():
        raise ValueError(f"--image {image} is a folder; give one image file ({what}).")
    return image_pairs(image, out)[0][1]


def check_reference(reference: Path | None) -> None:
    if reference is not None and not reference.is_file():
        raise FileNotFoundError(f"--reference {reference} does not exist" +
                                (" (it is a folder; give one image file)." if reference.is_dir() else "."))


def cmd_translate(args) -> int:
    """Paint a drawing (a line-art translator) or a photo (grayscale, lowres) with a translator: a prior trained with
    an image condition; writes the image (--n 1) or a grid of --n images, each of the input's size."""
    out = single_image_out(args.image, args.out)
    check_reference(args.reference)
    from .data.labels import parse_labels
    from .pipelines.files import save_image
    from .pipelines.images import make_grid_image
    from .pipelines.translation import TranslatePipeline

    pipe = TranslatePipeline.from_pretrained(args.tokenizer, args.prior, device=args.device, condition=args.condition)
    images = pipe(args.image, labels=parse_labels(args.labels), reference=args.reference, n=args.n, seed=args.seed,
                  cfg_scale=args.cfg_scale, cfg_target=args.cfg_target, temperature=args.temperature,
                  top_k=args.top_k, top_p=args.top_p, steps=args.steps)
    save_image(images[0] if len(images) == 1 else make_grid_image(images, columns=args.columns), out)
    shape = "1 image" if len(images) == 1 else f"a grid of {len(images)} images"
    print(f"{shape} of {images[0].size[0]}x{images[0].size[1]} -> {out}")
    return 0


def cmd_edit(args) -> int:
    """Re-style a face towards --labels without a mask: the token cells the labels agree with least (--strength of
    them) are re-sampled, every other pixel is kept."""
    out = single_image_out(args.image, args.out, "a face")
    check_reference(args.reference)
    from .data.labels import parse_labels
    from .pipelines.files import save_image
    from .pipelines.translation import TranslatePipeline, check_strength

    check_strength(args.strength)
    pipe = TranslatePipeline.from_pretrained(args.tokenizer, args.prior, device=args.device)
    result = pipe.edit(args.image, labels=parse_labels(args.labels), strength=args.strength, seed=args.seed,
                              cfg_scale=args.cfg_scale, cfg_target=args.cfg_target, temperature=args.temperature,
                              top_k=args.top_k, top_p=args.top_p, reference=args.reference, steps=args.steps)
    save_image(result.image, out)
    changed, total = int(result.changed.sum()), result.changed.numel()
    print(f"{changed} of {total} token cells re-sampled (strength {args.strength:g}), "
          f"{result.image.size[0]}x{result.image.size[1]} image -> {out}")
    return 0


def add_translation_options(p: argparse.ArgumentParser, image_help: str) -> None:
    p.add_argument("--tokenizer", required=True, type=Path, help="folder written by Tokenizer.save_pretrained")
    p.add_argument("--prior", required=True, type=Path,
                   help="folder with the translator (recipes/translate_anime.py writes prior/)")
    p.add_argument("--image", required=True, type=Path, help=image_help)
    p.add_argument("--reference", type=Path, default=None,
                   help="picture whose colours to paint with (any size); only for a translator trained with "
                        "--reference (default: none)")
    add_generation_options(p, cfg_scale=5.0)  # benchmarks/translation_compare.py --sweep-cfg: 5 of 1, 2, 3, 5
    p.add_argument("--cfg-target", default="both", choices=["both", "image", "labels"],
                   help="what guidance's unconditional half drops: both (labels and image), image, labels "
                        "(default: both)")
    p.add_argument("--device", default=None, help=DEVICE_HELP)  # resolved by main(): no torch for --help


def add_sampling_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tokenizer", required=True, type=Path, help="folder written by Tokenizer.save_pretrained")
    p.add_argument("--prior", required=True, type=Path, help="folder with the trained prior (recipes write prior/)")
    p.add_argument("--labels", default=None,
                   help='condition: class id, class name or tags such as "blue hair,red eyes" (default: none)')
    add_generation_options(p)
    p.add_argument("--device", default=None, help=DEVICE_HELP)  # resolved by main(): no torch for --help


def add_generation_options(p: argparse.ArgumentParser, cfg_scale: float = 1.0) -> None:
    p.add_argument("--cfg-scale", type=float, default=cfg_scale,
                   help=f"classifier-free guidance scale (default: {cfg_scale:g}{' = off' if cfg_scale == 1 else ''})")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default: 1)")
    p.add_argument("--top-k", type=int, default=None, help="sample among the k likeliest tokens (default: all)")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling threshold (default: off)")
    p.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same images")
    p.add_argument("--steps", type=int, default=None,
                   help="decoding passes of a parallel-decoding prior such as maskgit (default: the prior's own)")


def add_eval_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tokenizer", type=Path, default=None,
                   help="folder written by Tokenizer.save_pretrained (needed unless --samples gives the images; with "
                        "--samples it is only checked against the folder's samples.json)")
    p.add_argument("--prior", type=Path, default=None,
                   help="folder with a trained prior: evaluate its samples instead of the tokenizer's reconstructions "
                        "(with --samples: checked against samples.json, and needed only for nll)")
    p.add_argument("--samples", type=Path, default=None, metavar="DIR",
                   help="score the images in DIR instead of sampling them: the folder `vqstack sample --out-dir` "
                        "wrote (in sample order; it must be complete), or any folder of images of one square size "
                        "(in name order). Image metrics: gfid, fd-*, precision, recall")
    p.add_argument("--data", required=True,
                   help="images as the recipes read them (folder, 'dir/*.tar', parquet, Hub id); with --prior or "
                        "--samples the reference images, or a token dataset folder (tokens_info.json) for nll")
    p.add_argument("--split", default="train", help="dataset split (default: train)")
    p.add_argument("--no-reference-cache", dest="reference_cache", action="store_false",
                   help="compute the real images' features for fd-*/rfid/gfid/precision/recall anew and do not cache "
                        "them (default: cached in $VQSTACK_CACHE/fd-reference, ~/.cache/vqstack)")
    p.add_argument("--metrics", default=None,
                   help="comma-separated. Tokenizer: psnr, ssim, lpips, stlpips, rfid, colour-hist (color-hist), "
                        "usage (+perplexity), attr:<tag column> (a classifier of the data's own tags, e.g. attr:hair, "
                        "on held-out originals and their reconstructions; cached in $VQSTACK_CACHE, default "
                        "~/.cache/vqstack); prior: "
                        "gfid, nll; both: fd-vgg, fd-<features name>, fd (on --features), precision, recall. "
                        "Default: psnr,ssim,stlpips,fd-vgg,usage / fd-vgg,precision,recall (+nll for token data). "
                        "See docs/evaluation.md")
    p.add_argument("--resolution", type=int, default=None,
                   help="tokenizer evaluation: image side after center-cropping (default: the tokenizer's encoder "
                        "resolution)")
    p.add_argument("--limit", type=int, default=None,
                   help="use the first N images / sequences (attr:*: the first N held-out tagged images; its "
                        "classifier still trains on all the others) (default: all)")
    p.add_argument("--batch-size", type=int, default=32, help="images per batch and process (default: 32)")
    p.add_argument("--num-workers", type=int, default=0, help="data loader workers (default: 0)")
    p.add_argument("--features", default="vgg16-stlpips",
                   help="features network of fd and precision/recall (default: vgg16-stlpips; "
                        "`vqstack components features` lists them)")
    p.add_argument("--k", type=int, default=3, help="neighbourhood size of precision/recall (default: 3)")
    p.add_argument("--fid-weights", type=Path, default=None,
                   help="torch-fidelity's InceptionV3 checkpoint weights-inception-2015-12-05-6726825d.pth for "
                        "rfid/gfid (default: the torch hub cache)")
    p.add_argument("--lpips-weights", type=Path, default=None,
                   help="torchvision ImageNet checkpoint of the LPIPS backbone (default: the torch hub cache)")
    p.add_argument("--lpips-net", default="alex", choices=["alex", "vgg", "squeeze"],
                   help="LPIPS backbone (default: alex, the lpips package's metric setting)")
    p.add_argument("--num-samples", type=int, default=None,
                   help="prior evaluation: images to sample (default: 1000); with --samples: score the folder's "
                        "first N (default: all)")
    p.add_argument("--labels", default=None,
                   help='prior evaluation: condition of the samples, e.g. "blue hair,red eyes"; several separated '
                        'by ";" are used in turn (default: none)')
    add_generation_options(p)
    p.add_argument("--json", type=Path, default=None, help="write the values and what they were measured with here")


def default_device() -> str:
    """--device when not given: "cuda" if torch sees a GPU, else "cpu" (asked only when a command runs)."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vqstack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("plugins", help=cmd_plugins.__doc__)
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--check", action="store_true",
                   help="run vqstack.conformance's checks on every registered component: one line each "
                        "(ok, FAILED: reason, skipped: what is missing here); exit 1 when any failed")
    p.add_argument("--kind", choices=list(KIND_HOOKS), default=None, help="with --check: only this kind")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("components", help=cmd_components.__doc__)
    p.add_argument("kind", nargs="?", choices=list(KIND_HOOKS), help="only this kind")
    p.set_defaults(func=cmd_components)

    p = sub.add_parser("demo", help="Build a small tokenizer from registry names, encode and decode images, "
                                    "and print the token grid and codebook statistics.")
    p.add_argument("--data", type=Path, default=Path("../shared/data/anime-faces"),
                   help="folder of images (default: the shared anime faces; random images when absent)")
    p.add_argument("--quantizer", default="vq", help="registered quantizer name (default: vq)")
    p.add_argument("--resolution", type=int, default=64, help="image size (default: 64)")
    p.add_argument("--batch", type=int, default=8, help="number of images (default: 8)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("sample", help=cmd_sample.__doc__)
    add_sampling_options(p)
    p.add_argument("--n", type=int, default=16, help="number of images (default: 16)")
    p.add_argument("--columns", type=int, default=None, help="images per grid row (default: square-ish)")
    p.add_argument("--out", type=Path, default=None, help="grid image to write (default: samples.png)")
    p.add_argument("--out-dir", type=Path, default=None,
                   help="instead of a grid: write one PNG per image here (00000.png ..., zero-padded to the width "
                        "of --n), in batches; run the same command again to resume an interrupted run, with the "
                        "same images as an uninterrupted one. samples.json records the arguments; a folder made "
                        "with others is refused. --labels may hold several conditions separated by ';', taken in "
                        "turn")
    p.add_argument("--batch-size", type=int, default=None,
                   help="with --out-dir: images per batch (default: 64). Each batch has its own generator seeded "
                        "from (--seed, batch index), so the batch size is part of what defines the images: resume "
                        "with the same one")
    p.add_argument("--overwrite", action="store_true",
                   help="with --out-dir: delete the folder's numbered PNGs and start again, even when it was made "
                        "with other arguments")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("inpaint", help=cmd_inpaint.__doc__)
    add_sampling_options(p)
    p.add_argument("--image", required=True, type=Path, help="image to repair")
    p.add_argument("--mask", required=True, type=Path,
                   help="mask image of the image's size: white where to re-sample, black to keep")
    p.add_argument("--candidates", type=int, default=1, metavar="N",
                   help="sample N fills in one batch and keep the one that best fits the kept tokens after the hole "
                        "(default: 1)")
    p.add_argument("--out", type=Path, default=Path("inpainted.png"), help="image to write (default: inpainted.png)")
    p.set_defaults(func=cmd_inpaint)

    p = sub.add_parser("outpaint", help=cmd_outpaint.__doc__)
    add_sampling_options(p)
    p.add_argument("--image", required=True, type=Path, help="image to grow")
    p.add_argument("--extend", required=True,
                   help="tokens to add per side, e.g. left=8,right=8 (sides: top, bottom, left, right)")
    p.add_argument("--out", type=Path, default=Path("outpainted.png"), help="image to write (default: outpainted.png)")
    p.set_defaults(func=cmd_outpaint)

    p = sub.add_parser("eval", help=cmd_eval.__doc__, description=cmd_eval.__doc__ + " Runs under accelerate "
                       "launch (-m vqstack.cli eval ...) across processes.")
    add_eval_options(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("degrade", help=cmd_degrade.__doc__, description=cmd_degrade.__doc__)
    p.add_argument("--spec", required=True,
                   help="steps applied in order, e.g. blur:0.5-2,down:4,noise:0-0.1,jpeg:30-90 (LOW-HIGH drawn per "
                        "image; steps: blur:SIGMA px, down:2|4|8, noise:STD on [0,1], poisson:PHOTONS at white, "
                        "jpeg:QUALITY 1-100)")
    p.add_argument("--image", required=True, type=Path, help="image file, or a folder of images")
    p.add_argument("--out", required=True, type=Path,
                   help="image file to write, or for a folder --image the folder to write (same file names)")
    p.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same images (default: 0)")
    p.set_defaults(func=cmd_degrade)

    p = sub.add_parser("restore", help=cmd_restore.__doc__, description=cmd_restore.__doc__)
    p.add_argument("--tokenizer", required=True, type=Path, help="folder written by Tokenizer.save_pretrained")
    p.add_argument("--restorer", required=True, type=Path,
                   help="folder with the restorer trained for that tokenizer (recipes/restore_anime.py writes it)")
    p.add_argument("--image", required=True, type=Path, help="image file, or a folder of images")
    p.add_argument("--out", required=True, type=Path,
                   help="image file to write, or for a folder --image the folder to write (same file names)")
    p.add_argument("--fidelity", type=float, default=0.5,
                   help="0: the restorer's predicted codes (cleanest), 1: the input's own codes (most faithful) "
                        "(default: 0.5)")
    p.add_argument("--upscale", type=int, default=None, metavar="F",
                   help="write images F times the input's size, restored in overlapping tiles (1: tiles at the "
                        "input's size); default: keep the size, restoring the whole image resized to the restorer's")
    p.add_argument("--device", default=None, help=DEVICE_HELP)  # resolved by main(): no torch for --help
    p.add_argument("--batch-size", type=int, default=16, help="images or tiles per forward pass (default: 16)")
    p.set_defaults(func=cmd_restore)

    p = sub.add_parser("translate", help=cmd_translate.__doc__, description=cmd_translate.__doc__)
    add_translation_options(p, "drawing (line-art translator) or photo (grayscale, lowres) to paint: any size; RGB, "
                               "RGBA or white lines on black")
    p.add_argument("--labels", default=None, help='tags such as "green hair,blue eyes", or a class (default: none)')
    p.add_argument("--condition", default=None,
                   help="the condition you expect the translator to read (lineart, grayscale, lowres, a plugin's): "
                        "a translator trained for another is refused (default: whatever it was trained for)")
    p.add_argument("--n", type=int, default=4, help="number of images (default: 4)")
    p.add_argument("--columns", type=int, default=None, help="images per grid row (default: square-ish)")
    p.add_argument("--out", required=True, type=Path,
                   help="image to write: the image itself with --n 1, else a grid of the --n images")
    p.set_defaults(func=cmd_translate)

    p = sub.add_parser("edit", help=cmd_edit.__doc__, description=cmd_edit.__doc__)
    add_translation_options(p, "face to re-style (any size)")
    p.add_argument("--labels", required=True, help='what the face should become, e.g. "green hair,blue eyes"')
    p.add_argument("--strength", type=float, default=0.5,
                   help="share of token cells to re-sample, in [0, 1]: 0 keeps the face, 1 re-samples every cell "
                        "(default: 0.5)")
    p.add_argument("--out", required=True, type=Path, help="image to write")
    p.set_defaults(func=cmd_edit)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "device", "") is None:
        args.device = default_device()
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, UnknownComponentError, PluginLoadError) as err:
        # a mistake in the arguments or files: its message names the valid choices; a traceback would bury it
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"vqstack {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
