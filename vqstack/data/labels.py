"""Labels: the condition a user gives on the command line, and labels from a separate file.

``parse_labels`` reads ``--labels`` ("3" is a class id, anything else a class name or tags). ``relabel`` replaces
an image data set's tag columns without touching the images: a JSON-lines file in the ``imagefolder`` metadata
format (one object per line with ``file_name`` and tag columns) is joined to the images by file name. This is how
corrected or new tags are used with a read-only image folder.
"""
from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

from .images import DataError, file_sha256, image_column, metadata_file

__all__ = ["file_sha256", "parse_labels", "read_metadata", "relabel"]  # file_sha256: from images, used with these


def parse_labels(text: str | None):
    """``--labels``: "3" -> 3 (a class id); anything else (a class name, "blue hair,red eyes") is passed to the prior
    as is; None stays None (unconditional)."""
    if text is None:
        return None
    return int(text) if text.strip().lstrip("-").isdigit() else text


def read_metadata(path) -> dict[str, dict]:
    """``file_name -> {column: value}`` from a JSON-lines file; every line needs ``file_name``."""
    path = metadata_file(path)
    rows = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{number} is not JSON ({err.msg}); each line must be one object.") from err
        if not isinstance(row, dict) or not isinstance(row.get("file_name"), str):
            raise DataError(f"{path}:{number} has no 'file_name' string; each line needs one, like "
                            f'{{"file_name": "00002.jpg", "hair": "blue"}}.')
        rows[PurePosixPath(row.pop("file_name")).as_posix()] = row
    if not rows:
        raise DataError(f"Metadata file {path} holds no rows.")
    return rows


def relabel(dataset, metadata_path):
    """``dataset`` with the columns of ``metadata_path`` joined by file name (replacing same-named columns).

    A metadata ``file_name`` matches an image whose path ends with it (``00002.jpg`` or ``faces/00002.jpg``).
    Images the file does not mention get ``None`` in every new column.
    """
    from datasets import Image as ImageFeature

    rows = read_metadata(metadata_path)
    column = image_column(dataset)
    paths = [value.get("path") if isinstance(value, dict) else None
             for value in dataset.cast_column(column, ImageFeature(decode=False))[column]]
    if not any(paths):
        raise DataError(f"The images of this data set carry no file paths, so {metadata_path} cannot be joined by "
                        f"file_name; relabel works on image folders.")
    depths = sorted({len(PurePosixPath(name).parts) for name in rows})
    matched = [next((rows[key] for key in suffixes(path, depths) if key in rows), None) for path in paths]
    if not any(row is not None for row in matched):
        raise DataError(f"No image matches a file_name of {metadata_path}: images look like {paths[0]!r}, the file "
                        f"names {next(iter(rows))!r}.")
    columns = sorted({key for row in rows.values() for key in row})
    dataset = dataset.remove_columns([c for c in columns if c in dataset.column_names])
    for name in columns:
        dataset = dataset.add_column(name, [row.get(name) if row else None for row in matched])
    return dataset


def suffixes(path: str | None, depths: list[int]) -> list[str]:
    """The trailing 1, 2, ... components of ``path``, as metadata file names would spell them."""
    if not path:
        return []
    parts = PurePosixPath(Path(path).as_posix()).parts
    return [PurePosixPath(*parts[-depth:]).as_posix() for depth in depths if depth <= len(parts)]
