"""``vqstack eval --samples DIR``: score a folder of images (what ``vqstack sample --out-dir`` wrote, or any other)
instead of sampling them.

    folder = open_samples("samples64/", num_samples=10_000)  # checked: complete, readable, one size
    check_stage(folder, "--prior", "runs/prior64/prior")     # the prior samples.json records, or refused
    for batch in folder_batches(folder, batch_size=64):      # (B, 3, H, W) in [-1, 1], a batch at a time
        ...

- A folder with ``samples.json`` (vqstack/pipelines/folders.py) is read in sample order: its numbered PNGs
  ``00000.png`` ... for the ``n`` it records, every one of them present (an interrupted run is refused with the
  ``vqstack sample`` command that finishes it). Any other folder: its image files (by suffix; hidden files, other
  files and sub-folders ignored) in name order.
- Pixels are the files' 8-bit values, mapped to [-1, 1] by the very function eval's own samples go through
  (``generation.image_pixels``), so a folder written by ``vqstack sample`` gives the values ``vqstack eval --prior``
  gives when it samples the same images itself.
- Every image must have the same size (refused, naming both, otherwise: nothing is resized); the reference images are
  center-cropped to it. Only headers are read up front; the pixels are read batch by batch.
"""
from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path

import torch

from ..pipelines.files import IMAGE_SUFFIXES
from ..pipelines.folders import RECORD_NAME, image_names

# the vqstack sample options samples.json records beside --n/--batch-size/--seed/--device, with their defaults (a
# default is left out of the command that finishes a folder)
OPTIONAL_OPTIONS = (("--labels", "labels", None), ("--cfg-scale", "cfg_scale", 1.0),
                    ("--temperature", "temperature", 1.0), ("--top-k", "top_k", None), ("--top-p", "top_p", None),
                    ("--steps", "steps", None))


@dataclass(frozen=True)
class SamplesFolder:
    """The images ``vqstack eval --samples`` scores: ``files`` in sample order, all ``size`` (height, width);
    ``record``: the folder's samples.json, None for a plain folder of images."""

    path: Path
    files: tuple[Path, ...]
    record: dict | None
    size: tuple[int, int]

    def describe(self) -> dict:
        """The JSON record's "samples_folder": where the images came from, in place of sampling options."""
        return {"path": str(self.path.resolve()), RECORD_NAME: self.record,
                "files": f"{self.files[0].name} .. {self.files[-1].name}"}


def open_samples(folder, num_samples: int | None = None) -> SamplesFolder:
    """The first ``num_samples`` images of ``folder`` (all when None), every mistake refused here in one line
    before any image is scored: a missing or empty folder, an incomplete ``vqstack sample`` run, more images asked
    for than there are, an unreadable file, images of two sizes."""
    folder = Path(folder)
    if not folder.is_dir():
        what = "is a file" if folder.exists() else "does not exist"
        raise FileNotFoundError(f"--samples {folder} {what}; give the folder `vqstack sample --out-dir` wrote, or "
                                f"any folder of images ({', '.join(IMAGE_SUFFIXES)}).")
    record = samples_record(folder)
    files = recorded_files(folder, record) if record is not None else plain_files(folder)
    files = first(folder, files, num_samples)
    return SamplesFolder(folder, tuple(files), record, common_size(folder, files))


def samples_record(folder: Path) -> dict | None:
    """``folder``'s samples.json, None when it has none; one that does not record how many images (``n``) it
    defines is refused rather than guessed at."""
    path = folder / RECORD_NAME
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        record = None
    n = record.get("n") if isinstance(record, dict) else None
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{path} is not the record `vqstack sample --out-dir` writes (no image count n); rename "
                         f"or remove it to score {folder} as a plain folder of images.")
    return record


def recorded_files(folder: Path, record: dict) -> list[Path]:
    """The ``n`` numbered PNGs samples.json defines, in sample order; refused unless every one exists."""
    names = image_names(record["n"])
    present = [folder / name for name in names if (folder / name).is_file()]
    if len(present) < len(names):
        raise ValueError(f"--samples {folder} holds {len(present)} of the {len(names)} images its {RECORD_NAME} "
                         f"records: finish it with `{finish_command(folder, record)}` (the same command resumes "
                         f"the interrupted run).")
    return present


def finish_command(folder: Path, record: dict) -> str:
    """The ``vqstack sample`` command that made (and so finishes) ``folder``, from its samples.json."""
    parts = ["vqstack", "sample", "--tokenizer", str(record.get("tokenizer", "TOKENIZER")),
             "--prior", str(record.get("prior", "PRIOR")), "--n", str(record["n"]),
             "--batch-size", str(record.get("batch_size")), "--seed", str(record.get("seed"))]
    for option, name, default in OPTIONAL_OPTIONS:
        if record.get(name, default) != default:
            parts += [option, str(record[name])]
    if record.get("device"):
        parts += ["--device", str(record["device"])]
    return shlex.join([*parts, "--out-dir", str(folder)])


def plain_files(folder: Path) -> list[Path]:
    """A folder without samples.json: its image files in name order."""
    files = sorted(f for f in folder.iterdir()
                   if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"--samples {folder} holds no images ({', '.join(IMAGE_SUFFIXES)}); give the folder "
                         f"`vqstack sample --out-dir` wrote, or any folder of images.")
    return files


def first(folder: Path, files: list[Path], num_samples: int | None) -> list[Path]:
    if num_samples is None:
        return files
    if num_samples > len(files):
        raise ValueError(f"--num-samples {num_samples} asks for more images than --samples {folder} holds "
                         f"({len(files)}); give --num-samples {len(files)} or fewer, or leave it out to score them "
                         f"all.")
    return files[:num_samples]


def common_size(folder: Path, files: list[Path]) -> tuple[int, int]:
    """(height, width) of every file, from the headers alone; an unreadable file or a second size is refused."""
    from PIL import Image, UnidentifiedImageError

    size = None
    for file in files:
        try:
            with Image.open(file) as image:  # lazy: reads the header, not the pixels
                width, height = image.size
        except (UnidentifiedImageError, OSError) as err:
            raise ValueError(f"--samples {folder}: {file.name} is not an image PIL can read ({err}); remove it or "
                             f"give another folder.") from err
        if size is None:
            size, first_name = (height, width), file.name
        elif (height, width) != size:
            raise ValueError(f"--samples {folder}: {file.name} is {width}x{height} but {first_name} is "
                             f"{size[1]}x{size[0]}; the samples are compared with reference images of one size, so "
                             f"give a folder of images of one size (nothing is resized).")
    return size


def check_stage(folder: SamplesFolder, option: str, directory, field: str) -> None:
    """Refuse ``directory`` (``option``: --tokenizer or --prior) unless its weights are those ``field``
    (tokenizer_sha256, prior_sha256) of the folder's samples.json records; a plain folder records none to check."""
    from ..core.serialization import weights_sha256

    if folder.record is None:
        return
    recorded, actual = folder.record.get(field), weights_sha256(directory)
    if recorded != actual:
        made_by = folder.record.get(option[2:], "?")
        raise ValueError(f"{option} {directory} (weights sha256 {actual[:12]}) is not what made --samples "
                         f"{folder.path} ({RECORD_NAME}: {made_by}, weights sha256 {str(recorded)[:12]}); give that "
                         f"one, or leave {option} out (the image metrics need only the images).")


class FolderImages(torch.utils.data.Dataset):
    """The folder's images, read one at a time, as (3, H, W) in [-1, 1]."""

    def __init__(self, files):
        self.files = list(files)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        from PIL import Image

        from .generation import image_pixels

        with Image.open(self.files[index]) as image:
            return image_pixels(image)


def folder_batches(folder: SamplesFolder, batch_size: int, rank: int = 0, world: int = 1,
                   num_workers: int = 0) -> torch.utils.data.DataLoader:
    """This process's batches of ``folder``: chunk i (images i*batch_size ..) goes to process i % world, as eval's
    own sampling spreads its chunks; at most a batch (per worker) is in memory at a time."""
    chunks = range(rank, -(-len(folder.files) // batch_size), world)
    mine = [i for chunk in chunks for i in range(chunk * batch_size, min((chunk + 1) * batch_size,
                                                                          len(folder.files)))]
    return torch.utils.data.DataLoader(torch.utils.data.Subset(FolderImages(folder.files), mine),
                                       batch_size=batch_size, num_workers=num_workers)
