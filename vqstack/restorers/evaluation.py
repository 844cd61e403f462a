"""The restore recipe's held-out evaluation: fixed damaged copies of held-out images, scored against the clean
images for the restorer at fidelity 0 and 1, the tokenizer's plain encode/decode (the baseline) and the damaged
input itself, plus the sample grid. The restorer changes between calls; what depends only on the frozen tokenizer
is computed once."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from ..core import build
from ..data.degradations import parse_spec
from .objective import clean_targets, restoration_loss
from .base import blend_codes

EVAL_METRICS = ("psnr", "ssim", "stlpips")
STLPIPS_MIN_SIZE = 18  # the VGG16 ST-LPIPS needs images of at least this many pixels a side
SAMPLE_FIDELITIES = (0.0, 0.5)


def case_name(pipeline: str) -> str:
    """``"down:4,noise:0.05"`` -> ``"down4+noise0.05"``: a metric-name part."""
    return pipeline.replace(" ", "").replace(":", "").replace(",", "+").replace("|", "or")


def eval_cases(spec: str, seed: int) -> dict:
    """``--eval-degradations`` -> {case name: Degradation}, one per ';' alternative."""
    cases = {}
    for pipeline in spec.split(";"):
        degradation = parse_spec(pipeline, seed=seed)
        name = case_name(str(degradation))
        if name in cases:
            raise ValueError(f"--eval-degradations {spec!r} names the case {pipeline.strip()!r} twice.")
        cases[name] = degradation
    return cases


def parse_eval_metrics(text: str, resolution: int) -> list[str]:
    metrics = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in metrics if m not in EVAL_METRICS]
    if unknown or not metrics:
        raise ValueError(f"--eval-metrics {text!r}: choose from {', '.join(EVAL_METRICS)}.")
    if "stlpips" in metrics and resolution < STLPIPS_MIN_SIZE:
        raise ValueError(f"--eval-metrics stlpips needs images of at least {STLPIPS_MIN_SIZE} pixels a side, this "
                         f"run's are {resolution}.")
    return metrics


class Evaluation:
    """The fixed held-out evaluation: clean images, their damaged copies per case, and metric suites. What depends
    on the frozen tokenizer alone (clean targets, the tokenizer baseline, the input's own scores) is computed once."""

    def __init__(self, tokenizer, clean: torch.Tensor, cases: dict, metrics: list[str], batch_size: int, device,
                 code_weight: float, feature_weight: float):
        from vqstack.evaluation import build_suite

        self.tokenizer, self.batch_size, self.device = tokenizer, batch_size, device
        self.code_weight, self.feature_weight = code_weight, feature_weight
        self.clean = clean.to(device)
        cpu = clean.cpu()
        # every case damages held-out image i with the draws of (seed, epoch 0, i): the same inputs every time
        self.degraded = {name: torch.stack([d.sample(image, i, 0) for i, image in enumerate(cpu)]).to(device)
                         for name, d in cases.items()}
        shared = {}
        if "stlpips" in metrics:  # one frozen VGG16 for every suite
            shared["stlpips"] = build("perceptual", "stlpips", net="vgg").to(device)
        self.suite = build_suite(metrics, networks=shared, sync_on_compute=False).to(device)
        self.constant: dict | None = None
        self.targets: list | None = None  # the clean images' (codes, features), per batch

    def scores(self, pairs) -> dict:
        """Metric values of (fake, real) batches."""
        self.suite.reset()
        for fake, real in pairs:
            self.suite.update_pairs(fake, real)
        return self.suite.compute()

    def batches(self, images: torch.Tensor):
        return zip(images.split(self.batch_size), self.clean.split(self.batch_size))

    @torch.no_grad()
    def constants(self) -> dict:
        """Scores of the tokenizer's reconstruction of the clean images (eval/clean/<m>), and per case of the
        damaged input itself (<m>_input) and of the tokenizer's encode/decode of it (<m>_tokenizer)."""
        if self.constant is None:
            tok = self.tokenizer
            values = {f"clean/{k}": v for k, v in self.scores(
                (tok.decode(tok.encode(real)), real) for _, real in self.batches(self.clean)).items()}
            for name, images in self.degraded.items():
                values.update({f"{name}/{k}_input": v for k, v in self.scores(self.batches(images)).items()})
                values.update({f"{name}/{k}_tokenizer": v for k, v in self.scores(
                    (tok.decode(tok.encode(fake)), real) for fake, real in self.batches(images)).items()})
            self.targets = [clean_targets(tok, real) for _, real in self.batches(self.clean)]
            self.constant = values
        return self.constant

    @torch.no_grad()
    def restore(self, restorer, images: torch.Tensor, fidelities) -> tuple:
        """(restorer output, {fidelity: restored images}) of a batch of damaged images."""
        out = restorer(images)  # in bf16/fp16 under --mixed-precision (accelerate wraps the forward in autocast)
        out = dataclasses.replace(out, logits=out.logits.float(), features=out.features.float())
        return out, {f: self.tokenizer.decode_codes(blend_codes(self.tokenizer, out, f)).clamp(-1, 1)
                     for f in fidelities}

    @torch.no_grad()
    def __call__(self, restorer) -> dict:
        was_training = restorer.training
        restorer.eval()
        values = dict(self.constants())
        for name, images in self.degraded.items():
            sums, fidelity0, fidelity1 = {}, [], []
            for (fake, real), (codes, features) in zip(self.batches(images), self.targets):
                out, restored = self.restore(restorer, fake, (0.0, 1.0))
                _, logs = restoration_loss(out, codes, features, self.code_weight, self.feature_weight)
                for key, value in logs.items():  # batch means, weighted by the batch's size
                    sums[key] = sums.get(key, 0.0) + value * len(fake)
                fidelity0.append((restored[0.0], real))
                fidelity1.append((restored[1.0], real))
            values.update({f"{name}/{k}": float(v) / len(images) for k, v in sums.items()})
            values.update({f"{name}/{k}": v for k, v in self.scores(fidelity0).items()})
            values.update({f"{name}/{k}_fidelity1": v for k, v in self.scores(fidelity1).items()})
        restorer.train(was_training)
        names = list(self.degraded)
        per_case = sorted({key.split("/", 1)[1] for key in values if key.split("/", 1)[0] in names})
        means = {key: sum(values[f"{name}/{key}"] for name in names) / len(names) for key in per_case}
        return {f"eval/{key}": value for key, value in {**means, **dict(sorted(values.items()))}.items()}

    @torch.no_grad()
    def grid(self, restorer, path: Path, count: int = 8) -> Path:
        """Rows: damaged (the cases in turn), tokenizer alone, restored at each SAMPLE_FIDELITIES, original."""
        from torchvision.utils import make_grid, save_image

        names = list(self.degraded)
        count = min(count, len(self.clean))
        damaged = torch.stack([self.degraded[names[i % len(names)]][i] for i in range(count)])
        was_training = restorer.training
        restorer.eval()
        _, restored = self.restore(restorer, damaged, SAMPLE_FIDELITIES)
        restorer.train(was_training)
        tokenizer_alone = self.tokenizer.decode(self.tokenizer.encode(damaged))
        rows = [damaged, tokenizer_alone, *restored.values(), self.clean[:count]]
        grid = make_grid(torch.cat(rows).float().clamp(-1, 1).cpu(), nrow=count, padding=2, normalize=True,
                         value_range=(-1, 1))
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image(grid, path)
        return path
