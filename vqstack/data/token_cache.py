"""What an encoded token data set was made from, and a refusal to reuse it for other inputs: a prior trained on
another tokenizer's tokens decodes into garbage without any error."""
from __future__ import annotations

import json
from pathlib import Path

from ..core.serialization import weights_sha256
from .images import describe_source
from .labels import file_sha256
from .tokens import INFO_NAME

# each field of the key, and the option a user changes it with
CACHE_FIELDS = {"tokenizer_sha256": "the tokenizer's weights (--tokenizer)", "data": "--data",
                "metadata_sha256": "the data's own metadata file", "resolution": "--resolution",
                "label_columns": "the label columns (--attributes / --class-column)", "labels_sha256": "--metadata"}


def token_cache_key(tokenizer_dir, data: str, resolution: int, label_columns: list[str], metadata=None) -> dict:
    """Everything the tokens depend on: the tokenizer's weights, the data (and its own metadata file), the
    resolution, the label columns and a replacement metadata file."""
    return {"tokenizer_sha256": weights_sha256(tokenizer_dir), **describe_source(data),
            "resolution": resolution, "label_columns": label_columns,
            "labels_sha256": file_sha256(metadata) if metadata else None}


def short(value) -> str:
    return f"{value[:12]}..." if isinstance(value, str) and len(value) == 64 else repr(value)


def check_token_cache(tokens_dir: Path, key: dict) -> None:
    """A ValueError naming each input that changed when ``tokens_dir`` was encoded from other inputs than ``key``."""
    info = json.loads((Path(tokens_dir) / INFO_NAME).read_text())
    changed = [f"{CACHE_FIELDS[name]}: {short(info.get(name))} then, {short(key[name])} now"
               for name in CACHE_FIELDS if info.get(name) != key[name]]
    if changed:
        raise ValueError(f"{tokens_dir} was encoded from other inputs than this run's ({'; '.join(changed)}). "
                         f"Pass --rebuild-tokens to encode the images again, or choose another --output-dir.")
