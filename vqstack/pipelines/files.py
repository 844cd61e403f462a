"""Files in, files out, for ``vqstack degrade`` and ``vqstack restore``: one image to one file, or a folder of
images to a folder of the same names."""
from __future__ import annotations

from pathlib import Path

from PIL import Image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def image_pairs(image, out) -> list[tuple[Path, Path]]:
    """(source, target) files: one file, or every image of a folder (sorted, by suffix) to the same name in the
    folder ``out``; every mistake of the two paths is found here, before any work."""
    image, out = Path(image), Path(out)
    if not image.exists():
        raise FileNotFoundError(f"--image {image} does not exist.")
    if out.resolve() == image.resolve():
        raise ValueError(f"--out {out} is --image itself; give another file or folder, the originals stay.")
    if image.is_dir():
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out {out} is a file; a folder --image needs a folder --out (same file names).")
        files = sorted(f for f in image.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"--image {image} is a folder without images ({', '.join(IMAGE_SUFFIXES)}).")
        return [(f, out / f.name) for f in files]
    if out.is_dir():  # an existing folder: the file goes in it under its own name
        out = out / image.name
    if out.suffix.lower() not in Image.registered_extensions():
        raise ValueError(f"--out {out}: no image format is known for {out.suffix or 'a name without a suffix'}; "
                         f"end it in {', '.join(IMAGE_SUFFIXES)}.")
    return [(image, out)]


def read_image(path: Path) -> Image.Image:
    """The image in ``path``, fully loaded and turned upright (EXIF orientation); an unreadable file is one
    ValueError naming it."""
    from PIL import ImageOps

    try:
        with Image.open(path) as opened:
            return ImageOps.exif_transpose(opened)  # loads the pixels (a copy) before the file closes
    except (OSError, Image.DecompressionBombError, SyntaxError) as err:  # a damaged file: say which
        raise ValueError(f"--image {path} is not a readable image ({' '.join(str(err).split())}).") from err


def save_image(image: Image.Image, target: Path) -> None:
    """Save to ``target``, making its folder; a .jpg is saved at quality 95 without chroma subsampling, which adds
    little to what it holds."""
    target.parent.mkdir(parents=True, exist_ok=True)
    jpeg = target.suffix.lower() in (".jpg", ".jpeg")
    image.save(target, **({"quality": 95, "subsampling": 0} if jpeg else {}))
