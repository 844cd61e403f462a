"""Quality against time for the two priors over the same tokenizer: `maskgit` at each number of decoding passes, `ar`
at each temperature, timed at batch 1, 8 and 64, scored by FD-VGG and token NLL. Answers "which prior is the faster
choice for equal quality, at which batch size" and picks maskgit's default passes.

    python benchmarks/quality_time.py --tokenizer runs/small64/tokenizer --ar runs/prior64/prior \
        --maskgit runs/maskgit64/prior --data ../shared/data/anime-faces --plot docs/images/quality-time.png
    python benchmarks/quality_time.py ... --device cuda      # the GPU case (benchmarks/run_all.py --device cuda)
    python benchmarks/quality_time.py ... --quick            # 16 samples, batches 1 and 8, two settings each

Both priors sample without labels or guidance (the null condition, cfg 1), so both are measured against the whole
data set. Per setting:
- seconds per image at each batch: the fastest of --reps timed `prior.generate(batch, ...)` calls after a warm-up,
  divided by the batch; the tokenizer's decoding, the same for both priors, is timed apart (decode_s_per_image);
- FD-VGG (ST-LPIPS's ImageNet VGG16 features, the offline Fréchet distance of docs/evaluation.md) of --n samples
  against the first --reference faces at the tokenizer's resolution (cached reference features);
- token NLL: the mean per-token negative log-likelihood of the sampled tokens under the `ar` prior, the one
  likelihood both priors' samples can be scored by. It rewards low temperatures (an ar sample at temperature 0.7 is
  by construction likely under ar): read it beside FD-VGG, never alone.
The same seeds are used for every setting. Prints JSON; --plot draws FD-VGG and token NLL against seconds per image,
one panel per batch size.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import time

import torch
from PIL import Image, ImageDraw

from vqstack import Pipeline
from vqstack.core.serialization import load_component
from vqstack.evaluation.generation import evaluate_samples, token_nll
from vqstack.evaluation.reference import reference_features

COLOURS = {"ar": (31, 119, 180), "maskgit": (214, 39, 40)}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def settings(args) -> list[dict]:
    """Every (prior, option) pair measured: ar at each temperature, maskgit at each number of passes."""
    rows = [{"prior": "ar", "temperature": t} for t in args.temperatures]
    return rows + [{"prior": "maskgit", "steps": s} for s in args.maskgit_steps]


def generate(prior, n: int, setting: dict, seed: int) -> torch.Tensor:
    options = {"steps": setting["steps"]} if "steps" in setting else {"temperature": setting["temperature"]}
    return prior.generate(n, cfg_scale=1.0, generator=torch.Generator(prior.device).manual_seed(seed), **options)


def seconds_per_image(prior, setting: dict, batch: int, reps: int) -> float:
    """Fastest of ``reps`` timed calls (other load only ever slows a run), per image."""
    generate(prior, batch, setting, seed=0)  # warm-up: kernels, allocator
    best = math.inf
    for rep in range(reps):
        sync(prior.device)
        start = time.perf_counter()
        generate(prior, batch, setting, seed=rep + 1)
        sync(prior.device)
        best = min(best, time.perf_counter() - start)
    return best / batch


def decode_seconds(pipe: Pipeline, tokens: torch.Tensor, batch: int, reps: int) -> float:
    codes = tokens[:batch].to(pipe.device)
    with torch.inference_mode():
        pipe.decode(codes)
        best = math.inf
        for _ in range(reps):
            sync(pipe.device)
            start = time.perf_counter()
            pipe.decode(codes)
            sync(pipe.device)
            best = min(best, time.perf_counter() - start)
    return best / batch


def sample_tokens(prior, setting: dict, n: int, chunk: int) -> torch.Tensor:
    """``n`` samples in chunks of ``chunk``, chunk k seeded 1000 + k: the same seeds for every setting."""
    parts = [generate(prior, min(chunk, n - start), setting, seed=1000 + k)
             for k, start in enumerate(range(0, n, chunk))]
    return torch.cat(parts).cpu()


def quality(pipe: Pipeline, ar, tokens: torch.Tensor, reference, chunk: int, features: str) -> dict:
    with torch.inference_mode():
        images = [pipe.decode(tokens[i:i + chunk].to(pipe.device)).clamp(-1, 1).cpu()
                  for i in range(0, len(tokens), chunk)]
    (fd,) = evaluate_samples(images, reference, ["fd"], features=features).values()
    return {"fd_vgg": round(float(fd), 2), "token_nll": round(token_nll(ar, tokens.to(ar.device)), 4)}


def measure(args) -> dict:
    device = torch.device(args.device)
    ar_pipe = Pipeline.from_pretrained(args.tokenizer, args.ar, device=device)
    maskgit = load_component(args.maskgit).to(device).eval()
    for name, prior in (("ar", ar_pipe.prior), ("maskgit", maskgit)):
        if prior.seq_len != ar_pipe.prior.seq_len or prior.vocab_size != ar_pipe.prior.vocab_size:
            raise SystemExit(f"{name} prior does not match the tokenizer's tokens (seq_len/vocab_size).")
    priors = {"ar": ar_pipe.prior, "maskgit": maskgit}
    resolution = ar_pipe.image_size[0]
    reference = reference_features(args.data, args.features, resolution=resolution, limit=args.reference,
                                   device=device)
    rows = []
    for setting in settings(args):
        prior = priors[setting["prior"]]
        row = dict(setting)
        row["seconds_per_image"] = {str(b): round(seconds_per_image(prior, setting, b, args.reps), 5)
                                    for b in args.batches}
        tokens = sample_tokens(prior, setting, args.n, chunk=max(args.batches))
        row.update(quality(ar_pipe, ar_pipe.prior, tokens, reference, max(args.batches), args.features))
        rows.append(row)
        print(json.dumps(row), flush=True)
    decode = {str(b): round(decode_seconds(ar_pipe, tokens, min(b, args.n), args.reps), 5) for b in args.batches}
    return {"rows": rows, "decode_s_per_image": decode, "reference": {"faces": reference.count,
            "computed_now": reference.info.get("computed_now"), "seconds": reference.info.get("seconds")},
            "parameters": {k: sum(p.numel() for p in m.parameters()) for k, m in priors.items()},
            "seq_len": ar_pipe.prior.seq_len, "resolution": resolution}


def regimes(rows: list[dict], batches: list[int]) -> dict:
    """Per batch: the fastest setting of each prior among those within 5% of the best FD-VGG either prior reached,
    and which prior is the faster choice at that quality (None when a prior never gets there)."""
    best = min(r["fd_vgg"] for r in rows)
    good = [r for r in rows if r["fd_vgg"] <= best * 1.05]
    out = {}
    for b in map(str, batches):
        fastest = {}
        for name in ("ar", "maskgit"):
            mine = [r for r in good if r["prior"] == name]
            fastest[name] = min(mine, key=lambda r: r["seconds_per_image"][b]) if mine else None
        times = {k: (v["seconds_per_image"][b] if v else None) for k, v in fastest.items()}
        winner = min((k for k in times if times[k] is not None), key=lambda k: times[k])
        out[b] = {"fd_vgg_within": round(best * 1.05, 2), "faster": winner, "seconds_per_image": times,
                  "settings": {k: ({x: v[x] for x in ("temperature", "steps") if x in v} if v else None)
                               for k, v in fastest.items()}}
    return out


# --- the plot (PIL: no plotting library is a dependency) ---------------------------------------------------------


def plot(result: dict, path: str, batches: list[int]) -> None:
    """Two rows of panels, one per batch size: FD-VGG (top) and token NLL under ar (bottom) against seconds per
    image (log scale)."""
    metrics = (("fd_vgg", "FD-VGG"), ("token_nll", "token NLL under ar"))
    panel_w, panel_h = 360, 300
    image = Image.new("RGB", (panel_w * len(batches) + 20, panel_h * len(metrics) + 50), "white")
    draw = ImageDraw.Draw(image)
    for row, (key, label) in enumerate(metrics):
        for column, batch in enumerate(map(str, batches)):
            panel(draw, result["rows"], key, batch, column * panel_w + 56, row * panel_h + 30, panel_w - 70,
                  panel_h - 70, f"{label}, batch {batch}")
    legend = (f"down is better, against seconds per image (log). ar: T = temperature; maskgit: p = decoding "
              f"passes. {result['machine']}")
    draw.text((10, panel_h * len(metrics) + 20), legend, fill="black")
    image.save(path)


def panel(draw, rows: list[dict], key: str, batch: str, x0: int, top: int, w: int, h: int, title: str) -> None:
    values = [r[key] for r in rows]
    y_lo, y_hi = min(values) - 0.05 * (max(values) - min(values)), max(values) + 0.05 * (max(values) - min(values))
    times = [r["seconds_per_image"][batch] for r in rows]
    lo, hi = math.log10(min(times)) - 0.1, math.log10(max(times)) + 0.1
    px = lambda t: x0 + (math.log10(t) - lo) / (hi - lo) * w  # noqa: E731
    py = lambda v: top + h - (v - y_lo) / (y_hi - y_lo) * h  # noqa: E731
    draw.rectangle([x0, top, x0 + w, top + h], outline="black")
    draw.text((x0 + 10, top - 20), title, fill="black")
    for tick in range(math.ceil(lo), math.floor(hi) + 1):
        draw.line([px(10 ** tick), top + h, px(10 ** tick), top + h + 4], fill="black")
        draw.text((px(10 ** tick) - 14, top + h + 6), f"{10 ** tick:g}s", fill="black")
    for value in (y_lo, (y_lo + y_hi) / 2, y_hi):
        draw.text((x0 - 48, py(value) - 6), f"{value:.3g}", fill="black")
    for name, colour in COLOURS.items():
        mine = sorted((r for r in rows if r["prior"] == name), key=lambda r: r["seconds_per_image"][batch])
        points = [(px(r["seconds_per_image"][batch]), py(r[key])) for r in mine]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        for r, (x, y) in zip(mine, points):
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
            draw.text((x + 4, y - 12), f"T{r['temperature']:g}" if name == "ar" else f"{r['steps']}p", fill=colour)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokenizer", required=True, help="tokenizer folder both priors were trained on")
    p.add_argument("--ar", required=True, help="the ar prior's folder")
    p.add_argument("--maskgit", required=True, help="the maskgit prior's folder (same tokens)")
    p.add_argument("--data", default="../shared/data/anime-faces", help="the real images for FD-VGG")
    p.add_argument("--device", default="cpu")
    p.add_argument("--features", default="vgg16-stlpips",
                   help="feature network of the Fréchet distance (default: vgg16-stlpips, i.e. FD-VGG; tests pass a "
                        "stand-in)")
    p.add_argument("--n", type=int, default=256, help="samples per setting for FD-VGG and NLL (default 256)")
    p.add_argument("--reference", type=int, default=1000, help="real faces for FD-VGG (default 1000, cached)")
    p.add_argument("--batches", default="1,8,64", help="batch sizes timed (default 1,8,64)")
    p.add_argument("--maskgit-steps", default="1,2,4,6,8,12,16", help="maskgit decoding passes")
    p.add_argument("--temperatures", default="0.7,0.85,1.0,1.15", help="ar temperatures")
    p.add_argument("--reps", type=int, default=3, help="timed calls per setting and batch (the fastest counts)")
    p.add_argument("--quick", action="store_true", help="16 samples, batches 1 and 8, two settings each, 1 rep")
    p.add_argument("--plot", default=None, help="write the plot (PNG) here")
    p.add_argument("--json-out", default=None, help="also write the JSON here")
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.reference, args.batches, args.reps = 16, 64, "1,8", 1
        args.maskgit_steps, args.temperatures = "2,8", "0.85,1.0"
    args.batches = [int(b) for b in args.batches.split(",")]
    args.maskgit_steps = [int(s) for s in args.maskgit_steps.split(",")]
    args.temperatures = [float(t) for t in args.temperatures.split(",")]

    start = time.perf_counter()
    result = measure(args)
    machine = (torch.cuda.get_device_name() if args.device.startswith("cuda")
               else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    result.update({"benchmark": "quality against time, ar vs maskgit", "device": args.device, "machine": machine,
                   "torch": torch.__version__, "n": args.n, "batches": args.batches,
                   "regimes": regimes(result["rows"], args.batches),
                   "seconds": round(time.perf_counter() - start, 1)})
    text = json.dumps(result, indent=2)
    print(text)
    if args.json_out:
        with open(args.json_out, "w") as f:
            f.write(text + "\n")
    if args.plot:
        plot(result, args.plot, args.batches)
    return result


if __name__ == "__main__":
    main()
