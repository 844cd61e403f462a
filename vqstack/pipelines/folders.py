"""``vqstack sample --out-dir``: many samples, one PNG each, in batches; an interrupted run resumes where it stopped
and gives the same files as an uninterrupted one.

    result = sample_folder("runs/small64/tokenizer", "runs/prior64/prior", "samples/", 10_000, batch_size=64, seed=0)

- Batch k (images ``k*batch_size ..``) is sampled from its own generator, seeded with ``batch_seed(seed, k)``, so
  its images do not depend on the batches before it: a resumed run redraws exactly the missing batches. The seeds,
  the per-image labels and the 8-bit round trip are those of ``vqstack eval --prior`` (vqstack/evaluation/
  generation.py ``sample_images``): with the same ``--num-samples``, ``--batch-size``, ``--seed``, ``--labels`` and
  sampling options it scores these very images.
- Every PNG is written to a hidden temporary file and moved into place with ``os.replace``: a killed run never
  leaves half a PNG under an image's name. A batch whose files all exist is skipped; a batch with any missing file
  is sampled again whole (its existing files are rewritten with the same bytes).
- ``samples.json`` records what defines the images (both stages' weights by sha256, the sampling options, seed,
  batch size, n, device type); a folder started with anything else is refused, naming what differs, unless
  ``overwrite=True``, which deletes the folder's numbered PNGs and starts again.
"""
from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

RECORD_NAME = "samples.json"
NUMBERED = re.compile(r"\d+\.png")  # the names this module writes (any width: folders of other n included)
# a temporary file a killed run left: .00012.png.<pid>.partial, .samples.json.<pid>.partial
PARTIAL = re.compile(r"\.(\d+\.png|samples\.json)\.\d+\.partial")

# what defines the images -> how the command line names it (the order of the refusal's message)
KEY_OPTIONS = {
    "tokenizer_sha256": "--tokenizer weights (sha256)",
    "prior_sha256": "--prior weights (sha256)",
    "n": "--n",
    "batch_size": "--batch-size",
    "seed": "--seed",
    "labels": "--labels",
    "cfg_scale": "--cfg-scale",
    "temperature": "--temperature",
    "top_k": "--top-k",
    "top_p": "--top-p",
    "steps": "--steps",
    "device": "--device (type)",
}


@dataclass
class FolderResult:
    """What ``sample_folder`` did: ``written`` images sampled now in ``seconds``, ``kept`` found from before."""

    out_dir: Path
    n: int
    written: int
    kept: int
    seconds: float
    image_size: tuple[int, int] | None  # (width, height); None when every image was already there

    @property
    def images_per_second(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else float("nan")


def batch_seed(seed: int, batch: int) -> int:
    """The seed of batch ``batch``: an independent stream per (seed, batch), as vqstack.evaluation.generation's
    ``chunk_seed``, so batch k's images are the same whether or not the batches before it ran in this process."""
    import numpy as np

    return int(np.random.SeedSequence([seed, batch]).generate_state(1, dtype=np.uint64)[0] >> 1)


def image_names(n: int) -> list[str]:
    """``00000.png`` ... zero-padded to the width of ``n`` (n=10000: 00000.png .. 09999.png)."""
    width = len(str(n))
    return [f"{i:0{width}d}.png" for i in range(n)]


def sample_labels(text: str | None):
    """``--labels``: one condition for every image, or several separated by ";" taken in turn (image i gets the
    (i mod count)-th), as ``vqstack eval`` reads them."""
    from ..data.labels import parse_labels

    if not isinstance(text, str):  # None (unconditional), or a class id given from Python
        return text
    if ";" not in text:
        return parse_labels(text)
    return [parse_labels(part) if part.strip() else None for part in text.split(";")]


def labels_for(labels, start: int, count: int):
    """The labels of images ``start .. start+count``: one label for all, or a list cycled over the images."""
    if isinstance(labels, (list, tuple)):
        return [labels[(start + i) % len(labels)] for i in range(count)]
    return labels


def device_type(device) -> str:
    """"cpu", "cuda", ...: generators of different device types draw different numbers from the same seed."""
    import torch

    return torch.device(device).type


def sampling_key(tokenizer_dir, prior_dir, *, n: int, batch_size: int, seed: int, labels: str | None,
                 cfg_scale: float, temperature: float, top_k: int | None, top_p: float | None, steps: int | None,
                 device) -> dict:
    """Everything that decides the images of a folder (KEY_OPTIONS' names)."""
    from ..core.serialization import weights_sha256

    return {"tokenizer_sha256": weights_sha256(tokenizer_dir), "prior_sha256": weights_sha256(prior_dir),
            "n": n, "batch_size": batch_size, "seed": seed, "labels": labels, "cfg_scale": float(cfg_scale),
            "temperature": float(temperature), "top_k": top_k, "top_p": None if top_p is None else float(top_p),
            "steps": steps, "device": device_type(device)}


def check_counts(n: int, batch_size: int, seed: int) -> None:
    for option, value, least in (("--n", n, 1), ("--batch-size", batch_size, 1), ("--seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{option} must be an int >= {least} with --out-dir, got {value!r}.")


def shown(name: str, value) -> str:
    if name.endswith("_sha256") and isinstance(value, str):
        return value[:12]
    return "none" if value is None else json.dumps(value)


def differences(recorded: dict, key: dict) -> list[str]:
    """``--cfg-scale 3.0 there, 2.0 now`` for each entry of ``key`` that ``recorded`` holds otherwise."""
    return [f"{KEY_OPTIONS[name]} {shown(name, recorded.get(name))} there, {shown(name, value)} now"
            for name, value in key.items() if recorded.get(name) != value]


def numbered_files(out_dir: Path) -> list[Path]:
    return sorted(f for f in out_dir.iterdir() if NUMBERED.fullmatch(f.name))


def read_record(path: Path) -> dict:
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}): the folder's arguments are unknown; give another "
                         f"--out-dir, or add --overwrite to start it again.") from err
    if not isinstance(record, dict):
        raise ValueError(f"{path} holds no arguments; give another --out-dir, or add --overwrite to start again.")
    return record


def prepare_folder(out_dir: Path, key: dict, overwrite: bool = False, info: dict | None = None) -> None:
    """Make ``out_dir`` ready for the images ``key`` defines: new, or started with the same key (resume); refuse
    (ValueError, one line) a folder of other images; ``overwrite`` deletes its numbered PNGs and starts again.
    Removes the temporary files a killed run left and writes ``samples.json`` (key + ``info``)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out-dir {out_dir} is a file; give a folder (it is made when missing).")
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.iterdir():
        if PARTIAL.fullmatch(stale.name):
            stale.unlink(missing_ok=True)
    record_path = out_dir / RECORD_NAME
    existing = numbered_files(out_dir)
    if not overwrite:
        if record_path.is_file():
            changed = differences(read_record(record_path), key)
            if not changed:
                return  # the same images: resume
            raise ValueError(f"--out-dir {out_dir} was started with other arguments ({'; '.join(changed)}); run "
                             f"again with the same ones to resume, give another --out-dir, or add --overwrite to "
                             f"delete its {len(existing)} images and start again.")
        if existing:
            raise ValueError(f"--out-dir {out_dir} holds {len(existing)} numbered PNGs but no {RECORD_NAME}, so "
                             f"what made them is unknown; give a new or empty folder, or add --overwrite to delete "
                             f"them and start again.")
    else:
        for old in existing:
            old.unlink()
    write_atomically(record_path, (json.dumps({**key, **(info or {})}, indent=2) + "\n").encode())


def write_atomically(target: Path, data: bytes) -> None:
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    partial.write_bytes(data)
    os.replace(partial, target)


def save_png(image, target: Path) -> None:
    """``image`` as ``target``, whole or not at all: saved to a hidden temporary file, then renamed over it."""
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        image.save(partial, format="PNG")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)  # only there when the save or the rename failed (or was interrupted)


def missing_batches(out_dir: Path, n: int, batch_size: int) -> list[tuple[int, int, int]]:
    """(batch index, first image, image count) of every batch with any of its files missing."""
    names, present = image_names(n), set(os.listdir(out_dir))
    batches = [(k, start, min(batch_size, n - start)) for k, start in enumerate(range(0, n, batch_size))]
    return [(k, start, count) for k, start, count in batches
            if not all(names[i] in present for i in range(start, start + count))]


def count_done(out_dir, n: int) -> int:
    """How many of the ``n`` images ``out_dir`` holds."""
    present = set(os.listdir(out_dir)) if Path(out_dir).is_dir() else set()
    return sum(name in present for name in image_names(n))


def sample_folder(tokenizer_dir, prior_dir, out_dir, n: int, *, batch_size: int = 64, labels: str | None = None,
                  cfg_scale: float = 1.0, temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None, steps: int | None = None, seed: int = 0, device="cpu",
                  overwrite: bool = False, progress: bool = True) -> FolderResult:
    """Write ``n`` samples of the tokenizer + prior in ``tokenizer_dir``, ``prior_dir`` to ``out_dir`` as
    ``00000.png`` ... (zero-padded to the width of ``n``), ``batch_size`` per batch, resuming a folder started with
    the same arguments. ``labels``: the ``--labels`` text (one condition, or several separated by ";" taken in turn).
    The images depend on ``batch_size`` (each batch has its own generator) and on the device type; a tqdm bar shows
    images/s when ``progress``. KeyboardInterrupt leaves every finished PNG in place: call again to go on."""
    check_counts(n, batch_size, seed)
    out_dir = Path(out_dir)
    parsed = sample_labels(labels)
    key = sampling_key(tokenizer_dir, prior_dir, n=n, batch_size=batch_size, seed=seed, labels=labels,
                       cfg_scale=cfg_scale, temperature=temperature, top_k=top_k, top_p=top_p, steps=steps,
                       device=device)
    from ..version import __version__

    prepare_folder(out_dir, key, overwrite, info={"tokenizer": str(tokenizer_dir), "prior": str(prior_dir),
                                                  "names": f"{image_names(n)[0]} .. {image_names(n)[-1]}",
                                                  "vqstack": __version__})
    todo = missing_batches(out_dir, n, batch_size)
    kept = n - sum(count for _, _, count in todo)
    if not todo:
        return FolderResult(out_dir, n, 0, kept, 0.0, None)

    from tqdm.auto import tqdm

    from .generation import Pipeline

    pipe = Pipeline.from_pretrained(tokenizer_dir, prior_dir, device=device)
    height, width = pipe.image_size
    names = image_names(n)
    bar = tqdm(total=n, initial=kept, unit="img", desc="samples", disable=not progress, dynamic_ncols=True)
    written, started = 0, time.perf_counter()
    try:
        for batch, start, count in todo:
            images = pipe(count, labels=labels_for(parsed, start, count), seed=batch_seed(seed, batch),
                          batch_size=count, cfg_scale=cfg_scale, temperature=temperature, top_k=top_k, top_p=top_p,
                          steps=steps)
            for offset, image in enumerate(images):
                save_png(image, out_dir / names[start + offset])
            written += count
            bar.update(count)
    finally:
        bar.close()
    return FolderResult(out_dir, n, written, kept, time.perf_counter() - started, (width, height))
