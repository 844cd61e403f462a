"""Tokenizer training configurations: presets, config files, and command-line overrides merged in that order."""
from __future__ import annotations

import copy
import inspect
import json
from pathlib import Path

from ..core.plugins import registry

# One GroupNorm group in the tiny net: taming's 32 groups of its 32 channels are InstanceNorm, which strips each
# channel's per-image mean, and with it part of the image's colour (benchmarks/colour_ablation.py).
_TINY_NET = {"ch": 32, "ch_mult": [1, 2, 2], "num_res_blocks": 1, "attn_resolutions": [], "mid_attention": False,
             "norm_groups": 1}
# The tiny net with a fourth level: f = 8, so a 64 px image still gives 8x8 tokens (64 for the prior), at about a
# sixteenth of base's encoder/decoder FLOPs (5.7 vs 88 GFLOPs per 64 px image, forward and backward). The middle
# attention (taming's) runs on 8x8 maps of 128 channels: about 1 % of the FLOPs.
_SMALL_NET = {"ch": 32, "ch_mult": [1, 2, 2, 4], "num_res_blocks": 1, "attn_resolutions": [], "mid_attention": True,
              "norm_groups": 1}
_CIFAR_NET = {"ch": 128, "ch_mult": [1, 2, 2], "num_res_blocks": 2, "attn_resolutions": [], "mid_attention": False}
_BASE_NET = {"ch": 128, "ch_mult": [1, 1, 2, 4], "num_res_blocks": 2, "attn_resolutions": [8],
             "mid_attention": True}

# k-means initialisation and dead-code restarts: without them a codebook uses about half its codes (tiny) or
# collapses to one (cifar, by step 3); with them every preset keeps its codes alive (tests/test_presets.py).
_RESTARTS = {"kmeans_init": True, "dead_code_threshold": 0.5}

# Each preset is a complete config; a --config file overrides any part of it, and command-line options override
# both. Component names are registry names, so a plugin's quantizer or discriminator is used by name.
PRESETS = {
    # seconds per step on a laptop CPU: for tests, smoke runs and trying options
    "tiny": {
        "resolution": 32,
        "batch_size": 8,
        "lr": 4e-4,
        "tokenizer": {
            "encoder": {"name": "conv", "kwargs": {**_TINY_NET, "out_channels": 32}},
            # dim 8: better than 16 on both shoot-outs (anime +0.7 dB, FD-VGG 734 vs 773; CIFAR-10 +0.4 dB, 760 vs 817)
            "quantizer": {"name": "vq", "kwargs": {"dim": 8, "codebook_size": 256, "l2_normalize": True,
                                                   **_RESTARTS}},
            "decoder": {"name": "conv", "kwargs": {**_TINY_NET, "in_channels": 32}},
            "colour": "whiten",
        },
        "discriminator": {"name": "patchgan", "kwargs": {"ch": 16, "num_layers": 2}},
        "perceptual": {"name": "stlpips", "kwargs": {"net": "alex"}},
        "loss": {"disc_start": 2, "perceptual": 0.1, "adversarial": 0.1},
        "eval_size": 16,
    },
    # 64 px on a CPU: base's layout (f = 8, 1,024 codes, taming's loss weights) on the tiny net's widths, with
    # AlexNet ST-LPIPS (1.7 GFLOPs per image where VGG16 costs 8.9, more than the whole tokenizer) and a narrower
    # PatchGAN (0.27 GFLOPs per forward and backward where base's costs 1.0)
    "small": {
        "resolution": 64,
        "batch_size": 32,  # 2,048 vectors per batch: k-means needs >= 1,024, and restarts see each code twice
        "lr": 4e-4,  # tiny's: the same widths, trained at batch 32 in docs/training.md's runs
        "tokenizer": {
            "encoder": {"name": "conv", "kwargs": {**_SMALL_NET, "out_channels": 64}},
            # dim 8 as in tiny: base's codebook_dim 8 projects 256 -> 8 -> 256 inside the quantizer, which composes
            # with the tokenizer's 1x1 projections into the same linear maps; dim 8 drops the redundant pair.
            # usage_decay 0.9: in its first steps the codebook falls to about a tenth of its codes while the encoder
            # moves, and at 0.99 a code k-means gave 1-2 vectors is restarted only after 70-140 idle steps (a
            # quarter of a 30-minute CPU run); at 0.9 after 7-14 (tests/test_presets.py)
            "quantizer": {"name": "vq", "kwargs": {"dim": 8, "codebook_size": 1024, "l2_normalize": True,
                                                   **_RESTARTS, "usage_decay": 0.9}},
            "decoder": {"name": "conv", "kwargs": {**_SMALL_NET, "in_channels": 64}},
            "colour": "whiten",
        },
        "discriminator": {"name": "patchgan", "kwargs": {"ch": 32, "num_layers": 3}},
        "perceptual": {"name": "stlpips", "kwargs": {"net": "alex"}},
        "loss": {"disc_start": 5000, "perceptual": 1.0, "adversarial": 0.1},
        "eval_size": 256,
    },
    # the real default: a taming-style VQGAN at f=8 with LlamaGen's low-dimensional, l2-normalised codes
    "base": {
        "resolution": 64,
        "batch_size": 32,
        "lr": 2e-4,
        "tokenizer": {
            "encoder": {"name": "conv", "kwargs": {**_BASE_NET, "out_channels": 256}},
            "quantizer": {"name": "vq", "kwargs": {"dim": 256, "codebook_size": 1024, "codebook_dim": 8,
                                                   "l2_normalize": True, **_RESTARTS}},
            "decoder": {"name": "conv", "kwargs": {**_BASE_NET, "in_channels": 256}},
            "colour": "whiten",
        },
        "discriminator": {"name": "patchgan", "kwargs": {"ch": 64, "num_layers": 3}},
        "perceptual": {"name": "stlpips", "kwargs": {"net": "vgg"}},
        "loss": {"disc_start": 5000, "perceptual": 1.0, "adversarial": 0.1},
        "eval_size": 256,
    },
    # the plain VQ-VAE of van den Oord et al. on 32x32 images: f=4 (8x8 tokens), no GAN, no perceptual loss
    "cifar": {
        "resolution": 32,
        "batch_size": 64,
        "lr": 2e-4,
        "tokenizer": {
            "encoder": {"name": "conv", "kwargs": {**_CIFAR_NET, "out_channels": 64}},
            "quantizer": {"name": "vq", "kwargs": {"dim": 64, "codebook_size": 512, "l2_normalize": True,
                                                   **_RESTARTS}},
            "decoder": {"name": "conv", "kwargs": {**_CIFAR_NET, "in_channels": 64}},
            "colour": "whiten",
        },
        "discriminator": {"name": "patchgan", "kwargs": {"ch": 64, "num_layers": 2}},
        "perceptual": {"name": "stlpips", "kwargs": {"net": "vgg"}},
        "loss": {"disc_start": 0, "perceptual": 0.0, "adversarial": 0.0, "reconstruction": "l2"},
        "eval_size": 256,
    },
}


def deep_merge(base: dict, override: dict) -> dict:
    """``override`` on top of ``base``; nested dicts merge, everything else replaces. A component spec naming a
    different component replaces the old one whole: its arguments belong to the old component."""
    if "name" in override and override.get("name") != base.get("name"):
        return copy.deepcopy(override)
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def read_config_file(path) -> dict:
    """A JSON or YAML file holding any part of a preset."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--config {path}: no such file.")
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        import yaml

        return yaml.safe_load(text) or {}
    if path.suffix == ".json":
        return json.loads(text)
    raise ValueError(f"--config {path}: use a .json, .yaml or .yml file.")


def with_quantizer(config: dict, name: str, file_config: dict) -> dict:
    """Switch the quantizer to ``name``: its kwargs come from the config file when given there, otherwise the
    preset's ``dim`` (and ``codebook_size`` for quantizers that take one)."""
    quantizer = config["tokenizer"]["quantizer"]
    if quantizer["name"] == name:
        return config
    from_file = file_config.get("tokenizer", {}).get("quantizer", {})
    if "kwargs" in from_file:
        kwargs = from_file["kwargs"]
    else:
        kwargs = {"dim": quantizer["kwargs"]["dim"]}
        accepted = inspect.signature(registry("quantizer").get(name)).parameters
        if "codebook_size" in accepted and "codebook_size" in quantizer["kwargs"]:
            kwargs["codebook_size"] = quantizer["kwargs"]["codebook_size"]
    config["tokenizer"]["quantizer"] = {"name": name, "kwargs": kwargs}
    return config


COMPONENT = "component"  # a {"name", "kwargs"} spec; its kwargs are left to the constructor, which names what it refuses


def config_schema() -> dict:
    """The keys a config may hold, as nested dicts; a leaf is None (any value) or COMPONENT."""
    from .objectives import LossWeights  # late: objectives imports the losses (and torch)

    schema: dict = {key: None for preset in PRESETS.values() for key in preset}
    schema.update(discriminator=COMPONENT, perceptual=COMPONENT,
                  tokenizer={"encoder": COMPONENT, "quantizer": COMPONENT, "decoder": COMPONENT, "colour": None},
                  loss={field: None for field in LossWeights.__dataclass_fields__})
    return schema


def check_keys(config, schema: dict | None = None, where: str = "") -> None:
    """Refuse a key no preset knows (a typo would otherwise be silently ignored), naming the valid ones."""
    import difflib

    schema = config_schema() if schema is None else schema
    if not isinstance(config, dict):
        raise ValueError(f"--config: {where.rstrip('.') or 'the file'} must be a mapping, got "
                         f"{type(config).__name__}.")
    for key, value in config.items():
        if key not in schema:
            close = difflib.get_close_matches(key, schema, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"--config: unknown key '{where}{key}'.{hint} Valid keys here: "
                             f"{', '.join(sorted(schema))}.")
        if schema[key] == COMPONENT:
            unknown = sorted(set(value) - {"name", "kwargs"}) if isinstance(value, dict) else []
            if not isinstance(value, dict) or unknown:
                raise ValueError(f"--config: {where}{key} must be a component spec {{name, kwargs}}"
                                 + (f"; unknown keys {unknown}" if unknown else "") + ".")
        elif isinstance(schema[key], dict) and value is not None:
            check_keys(value, schema[key], f"{where}{key}.")


def resolve_config(preset: str, config_file=None, overrides: dict | None = None, quantizer: str | None = None):
    """The run's config: ``preset``, then the config file, then command-line ``overrides`` (None = unset)."""
    if preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; choose one of {', '.join(PRESETS)}.")
    file_config = read_config_file(config_file) if config_file else {}
    check_keys(file_config)
    config = deep_merge(PRESETS[preset], file_config)
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        section, _, field = key.partition(".")
        if field:
            config.setdefault(section, {})[field] = value
        else:
            config[key] = value
    if quantizer:
        config = with_quantizer(config, quantizer, file_config)
    scale = config["resolution"] / PRESETS[preset]["resolution"]
    for part in ("encoder", "decoder"):  # attention resolutions are measured against the nominal resolution
        kwargs = config["tokenizer"][part].setdefault("kwargs", {})
        if scale != 1 and "attn_resolutions" not in file_config.get("tokenizer", {}).get(part, {}).get("kwargs", {}):
            # keep the preset's attention at the same network level when only the image size changes
            kwargs["attn_resolutions"] = [round(r * scale) for r in kwargs.get("attn_resolutions", [])]
        kwargs["resolution"] = config["resolution"]
    return config
