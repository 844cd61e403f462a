"""FD-VGG in context: real faces against real faces (the floor), against a tokenizer's reconstructions, and against
a prior's samples, all with the same reference set and the same number of images.

    python benchmarks/fd_reference.py --tokenizer runs/tiny32/tokenizer [--prior runs/prior/prior] --n 1000

The images are two disjoint sets of ``--n`` faces from the end of ``--data`` (the recipes hold out the last ones):
A is the reference, B the other half. Rows: FD(A, B) is what two real samples of this size differ by (no model can
score below it on average); FD(A, recon(B)) and FD(B, recon(B)) are the tokenizer's; FD(A, samples) the prior's
(``--n`` unconditional samples at ``--cfg-scale``). FD-VGG is the Frechet distance on the ImageNet-trained VGG16
features of the stlpips-pytorch wheel: an offline stand-in, not FID. The real sets A and B are references: their
features come from the reference cache ($VQSTACK_CACHE/fd-reference, as ``vqstack eval`` keeps them), computed on the
first run only (the VGG16 at 224 px is most of the time on a CPU). Prints JSON.
"""
from __future__ import annotations

import argparse
import json
import sys

import torch

import vqstack
from vqstack.data import ImageDataset, load_image_dataset
from vqstack.evaluation.features import VGG16STLPIPSFeatures
from vqstack.evaluation.generation import sample_images
from vqstack.evaluation.metrics import FrechetDistance
from vqstack.evaluation.reconstruction import tokenizer_resolution
from vqstack.evaluation.reference import ReferenceFeatures, cached_references


def rows_from_end(images, start: int, n: int) -> range:
    """The ``n`` rows that end ``start`` rows before the last one (the recipes hold out the last ones)."""
    return range(len(images) - start - n, len(images) - start)


def faces(data: str, start: int, n: int, resolution: int) -> torch.Tensor:
    images = load_image_dataset(data)
    rows = ImageDataset(images.select(rows_from_end(images, start, n)), resolution, random_flip=False)
    return torch.stack([rows[i]["pixel_values"] for i in range(len(rows))])


def real_features(data: str, start: int, n: int, resolution: int, network) -> ReferenceFeatures:
    """The VGG16 features of the faces :func:`faces` gives, from the reference cache or computed now and cached."""
    images = load_image_dataset(data)
    rows = rows_from_end(images, start, n)

    def batches():
        return torch.utils.data.DataLoader(ImageDataset(images.select(rows), resolution, random_flip=False),
                                           batch_size=100)

    reference = cached_references({"vgg16-stlpips": network}, data=data, dataset=images, rows=rows,
                                  resolution=resolution, batches=batches)["vgg16-stlpips"]
    print(reference.describe(), file=sys.stderr)
    return reference


class Reference:
    """FD-VGG of any set against one reference set, whose features are given (kept by reset())."""

    def __init__(self, reference: ReferenceFeatures, network):
        self.metric = FrechetDistance(network)
        self.metric.use_reference(reference)

    def fd(self, images: torch.Tensor) -> float:
        self.metric.reset()  # the fake features only
        for batch in images.split(100):
            self.metric.update(batch, real=False)
        return round(float(self.metric.compute()), 2)


@torch.no_grad()
def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--prior", default=None, help="a prior trained on --tokenizer's tokens (optional)")
    p.add_argument("--data", default="../shared/data/anime-faces")
    p.add_argument("--n", type=int, default=1000, help="images per set (default: %(default)s)")
    p.add_argument("--cfg-scale", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    tokenizer = vqstack.Tokenizer.from_pretrained(args.tokenizer)
    resolution = tokenizer_resolution(tokenizer)
    b = faces(args.data, args.n, args.n, resolution)
    recon = torch.cat([tokenizer.decode(tokenizer.encode(batch)) for batch in b.split(100)])
    network = VGG16STLPIPSFeatures()
    ref_a, ref_b = (Reference(real_features(args.data, start, args.n, resolution, network), network)
                    for start in (0, args.n))
    report = {"data": args.data, "n": args.n, "resolution": resolution, "tokenizer": args.tokenizer,
              "feature_network": "vgg16-stlpips", "fd-vgg": {"real A vs real B (floor)": ref_a.fd(b),
                                                              "real A vs recon(B)": ref_a.fd(recon),
                                                              "real B vs recon(B)": ref_b.fd(recon)}}
    if args.prior:
        pipeline = vqstack.Pipeline.from_pretrained(args.tokenizer, args.prior)
        samples = torch.cat(list(sample_images(pipeline, args.n, batch_size=100, seed=args.seed,
                                               cfg_scale=args.cfg_scale)))
        report["prior"] = args.prior
        report["fd-vgg"][f"real A vs prior samples (cfg {args.cfg_scale})"] = ref_a.fd(samples)
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
