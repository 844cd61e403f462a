"""The metric names evaluation accepts, what each one measures and needs, and how Fréchet distances are named.

A Fréchet distance is named for its network: ``rfid``/``gfid`` only on InceptionV3 (that is FID), ``fd-vgg`` on the
built-in ST-LPIPS VGG16, ``fd-<name>`` on any other registered ``features`` network. ``fd`` alone means "on the
``--features`` network" and is reported under that network's name. ``attr:<column>`` names a tag column of the
data: the accuracy of a classifier of that column on held-out originals and their reconstructions.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..core.plugins import registry
from ..core.registry import suggest

TOKENIZER, PRIOR = "tokenizer", "prior"
BOTH = (TOKENIZER, PRIOR)
DEFAULT_FEATURES = "vgg16-stlpips"
FID_FEATURES = "inception"
SHORT_FD_NAMES = {"vgg16-stlpips": "vgg"}  # fd-vgg, not fd-vgg16-stlpips


@dataclass(frozen=True)
class MetricInfo:
    role: str  # what it is fed: "pairs" (fake, real), "sets" (real or fake images), "tokens", "sequences",
    # "tagged" (a data set with tags: not a suite metric)
    modes: tuple[str, ...]  # tokenizer evaluation, prior evaluation or both
    summary: str


METRICS = {
    "psnr": MetricInfo("pairs", (TOKENIZER,), "PSNR (dB) of each reconstruction on [0, 1] images, data range 1, "
                                              "averaged"),
    "ssim": MetricInfo("pairs", (TOKENIZER,), "SSIM (torchmetrics, Gaussian 11x11, sigma 1.5) on [0, 1] images, data "
                                              "range 1, averaged over images"),
    "colour-hist": MetricInfo("pairs", (TOKENIZER,), "1 - intersection of the joint RGB histograms (8x8x8 bins) "
                                                     "of each reconstruction and its original, averaged (0 to 1)"),
    "lpips": MetricInfo("pairs", (TOKENIZER,), "LPIPS (lpips package, --lpips-net backbone; needs its weights)"),
    "stlpips": MetricInfo("pairs", (TOKENIZER,), "shift-tolerant LPIPS, VGG16 (stlpips-pytorch; not LPIPS)"),
    "rfid": MetricInfo("sets", (TOKENIZER,), "FID of the reconstructions against the originals (InceptionV3; "
                                             "needs its weights)"),
    "gfid": MetricInfo("sets", (PRIOR,), "FID of the samples against the reference images (InceptionV3; needs its "
                                         "weights)"),
    "fd": MetricInfo("sets", BOTH, "Fréchet distance on the --features network, reported as fd-vgg (vgg16-stlpips) "
                                   "or fd-<name>"),
    "precision": MetricInfo("sets", BOTH, "k-NN precision (Kynkäänniemi et al. 2019) on the --features network"),
    "recall": MetricInfo("sets", BOTH, "k-NN recall (Kynkäänniemi et al. 2019) on the --features network"),
    "usage": MetricInfo("tokens", (TOKENIZER,), "fraction of the codebook used over the whole set, and the "
                                                "perplexity of the code histogram"),
    "attr": MetricInfo("tagged", (TOKENIZER,), "attr:<column>: accuracy of a small CNN trained on the data's own "
                                               "<column> tags, on held-out originals and their reconstructions, "
                                               "overall and per class"),
    "nll": MetricInfo("sequences", (PRIOR,), "mean per-token cross-entropy (nats) of a token dataset's sequences "
                                             "under their labels"),
}
ALIASES = {"perplexity": "usage",  # reported together
           "color-hist": "colour-hist"}
ATTRIBUTE = "attr:"
DEFAULT_METRICS = {TOKENIZER: "psnr,ssim,stlpips,fd-vgg,usage", PRIOR: "fd-vgg,precision,recall"}


@dataclass(frozen=True)
class Request:
    key: str  # the name the value is reported under: "psnr", "fd-vgg", "rfid", ...
    metric: str  # its entry in METRICS
    network: str | None = None  # the features network of a "sets" metric
    column: str | None = None  # the tag column of an attr:<column> metric


SHORT_NAMES_INVERSE = {short: name for name, short in SHORT_FD_NAMES.items()}


def fd_key(features: str) -> str:
    """The name a Fréchet distance on ``features`` is reported under."""
    return f"fd-{SHORT_FD_NAMES.get(features, features)}"


def parse_metrics(names, features: str = DEFAULT_FEATURES, mode: str | None = None) -> list[Request]:
    """``"psnr,fd-vgg,usage"`` (or a list) -> one :class:`Request` per metric, duplicates dropped, in order.

    ``mode`` ("tokenizer" or "prior") also refuses the metrics that do not apply to that evaluation."""
    if isinstance(names, str):
        names = names.split(",")
    names = [normalised(name) for name in names if name.strip()]
    if not names:
        raise ValueError(f"No metric given; choose from {', '.join(known_names())}.")
    registry("features").get(features)  # an unknown --features fails here, listing the registered ones
    requests = {}
    for name in names:
        request = resolve(ALIASES.get(name, name), features)
        if mode is not None:
            check_mode(name, request.metric, mode)
        requests.setdefault(request.key, request)
    return list(requests.values())


def normalised(name: str) -> str:
    """A metric name in lower case; the column of attr:<column> as given (tag columns are case-sensitive)."""
    name = name.strip()
    head, colon, column = name.partition(":")
    return head.lower() + colon + column.strip()


def resolve(name: str, features: str) -> Request:
    if name.startswith(ATTRIBUTE):
        column = name[len(ATTRIBUTE):]
        if not column:
            raise ValueError("attr: needs a tag column of the data, e.g. attr:hair.")
        return Request(name, "attr", column=column)
    if name == "fd":
        return Request(fd_key(features), "fd", features)
    if name.startswith("fd-"):
        network = SHORT_NAMES_INVERSE.get(name[3:], name[3:])
        if network not in registry("features"):
            raise ValueError(f"{name!r} names no features network; registered: "
                             f"{', '.join(registry('features').names())} (fd-vgg is vgg16-stlpips).")
        return Request(fd_key(network), "fd", network)
    if name in ("rfid", "gfid"):
        return Request(name, name, FID_FEATURES)
    if name in ("precision", "recall"):
        return Request(name, name, features)
    if name in METRICS:
        return Request(name, name)
    hint = (" Did you mean 'rfid' (reconstructions) or 'gfid' (samples)?" if name == "fid"
            else suggest(name, known_names()))
    raise ValueError(f"Unknown metric {name!r}. Metrics: {', '.join(known_names())}.{hint}")


def check_mode(name: str, metric: str, mode: str) -> None:
    if mode in METRICS[metric].modes:
        return
    valid = ", ".join(n for n in known_names() if mode in METRICS[metric_of(n)].modes)
    why = "measures a tokenizer (its reconstructions or tokens): drop --prior" if mode == PRIOR else \
        "measures a prior: pass --prior DIR"
    raise ValueError(f"Metric {name!r} {why}. For a {mode} evaluation choose from {valid}.")


def known_names() -> list[str]:
    names = [name if name != "attr" else "attr:<column>" for name in [*METRICS, *ALIASES]]
    return [*names, *(fd_key(n) for n in registry("features").names())]


def metric_of(name: str) -> str:
    """The METRICS entry a known name stands for ("fd-vgg" -> "fd", "perplexity" -> "usage", "attr:hair" ->
    "attr")."""
    if name.startswith("fd-"):
        return "fd"
    return "attr" if name.startswith(ATTRIBUTE) else ALIASES.get(name, name)


def attribute_columns(requests) -> list[str]:
    """The tag columns of the attr:<column> requests."""
    return [request.column for request in requests if request.metric == "attr"]
