"""Renders docs/benchmarks.md from the result files benchmarks/run_all.py writes, one per benchmark.

A result file is ``{"benchmark", "command", "quick", "machine", "seconds", "result"}`` (``"failed"`` instead of
``"result"`` when the script failed). Each section of the page is static text (SECTIONS: what the script measures
and why the numbers come out as they do) around tables built from ``result``, and a line naming the machine, its
measured matmul throughput, the versions, the date and the reference the ratios are against.
"""
from __future__ import annotations

import json
import os
import shlex
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from earlier import EARLIER  # benchmarks/ is on sys.path: run_all.py puts it there

ROOT = Path(__file__).resolve().parents[1]


def load_results(results_dir) -> dict[str, dict]:
    """Every ``<name>.json`` of ``results_dir``, by name."""
    return {path.stem: json.loads(path.read_text()) for path in sorted(Path(results_dir).glob("*.json"))}


def render(results: dict[str, dict], results_dir="benchmarks/results", quick: bool = False) -> str:
    """The whole page: the header, then every section, with its tables where ``results`` has them (``quick``: the
    page of a --quick run, whose "not measured" lines name the --quick command)."""
    parts = ["# Benchmarks", wrap(" ".join(HEADER.format(results=relative(results_dir)).split()))]
    if any(record.get("quick") for record in results.values()):
        parts.append(QUICK_WARNING)
    for section in SECTIONS:
        parts += [f"## {section.title}", section.intro]
        for name, subtitle in section.parts:
            if subtitle:
                parts.append(f"### {subtitle}")
            parts.append(render_part(section, name, results.get(name), quick))
        if section.why:
            parts.append(section.why)
    parts.append(STARTUP)  # measured by hand (wall clock of a fresh process), not by a script of run_all.py
    return "\n\n".join(part.strip() for part in parts if part) + "\n"


HEADER = """This page is generated: `python benchmarks/run_all.py` runs every script in `benchmarks/` (each prints
JSON), keeps the results in `{results}/` and rewrites the page from them, so edit `benchmarks/report.py`, not this file.
`--only NAME` reruns one benchmark and re-renders the page with the stored results of the others. Under every table:
the machine it ran on, that machine's matmul throughput measured at the start of the run, the versions, the date and
the reference its ratios are against. Ratios compare implementations on the same inputs in the same run; absolute
times on a shared machine vary with load, ratios much less."""

QUICK_WARNING = """> **Smoke test.** Some results below come from `run_all.py --quick`: every benchmark at its smallest
> size, to check that it runs. Their numbers are not benchmarks; they are marked under each table."""


def render_part(section, name: str, record: dict | None, quick: bool = False) -> str:
    """One result: its command, tables and machine line; or why there is none."""
    if record is None and quick and name in section.not_quick:
        return f"Not part of a --quick run: `python benchmarks/run_all.py --only {name}{section.needs}` produces it."
    if record is None:
        flag = " --quick" if quick else ""
        missing = f"Not measured yet: `python benchmarks/run_all.py{flag} --only {name}{section.needs}` produces it."
        if name in EARLIER and not quick:  # keep the published hand measurement until run_all replaces it
            return wrap(missing[:-1] + "; until then, the hand measurement published before run_all existed:") \
                + "\n\n" + EARLIER[name]
        return wrap(missing)
    command = f"`{display_command(record['command'])}`"
    if "failed" in record:
        failed = record["failed"]
        tail = "\n".join(failed.get("stderr", [])[-8:]) or "(no stderr)"
        return wrap(f"**failed:** {command} ({failed.get('error', 'exit status ' + str(failed.get('returncode')))}) "
                    f"on {when(record['machine'])}{' (--quick)' if record.get('quick') else ''}; the last lines of its "
                    f"stderr:") + f"\n\n```\n{tail}\n```"
    result = record["result"]
    reference = section.reference(result, record)
    note = [f"Note: {record['note']}"] if record.get("note") else []  # a correction to the stored run, in words
    parts = [command, *note, *section.build(result, record).split("\n\n"), machine_line(record, reference)]
    return "\n\n".join(part if part.startswith("|") else wrap(part) for part in parts)


def wrap(paragraph: str) -> str:
    """Generated prose at the page's line width (tables stay one row a line)."""
    return textwrap.fill(paragraph, width=118, break_long_words=False, break_on_hyphens=False)


def display_command(command: list[str]) -> str:
    """The command as one would type it: without the option that only tells the script where to write its JSON."""
    shown, skip = [], False
    for arg in command:
        if not skip and arg not in ("--json-out", "--json"):
            shown.append(arg)
        skip = arg in ("--json-out", "--json")
    return shlex.join(shown)


def when(machine: dict) -> str:
    return machine.get("date", "?").replace("T", " ").replace("+00:00", " UTC")


def machine_line(record: dict, reference: str) -> str:
    """Machine, measured matmul throughput, versions, date, quick or not, and the reference of the ratios."""
    m = record["machine"]
    gpu = f"GPU {m['gpu']}" if m.get("gpu") else "no GPU"
    load = f", load average {m['load_average']:.2f} at the start" if m.get("load_average") is not None else ""
    flops = m.get("matmul_gflops", {})
    matmul = ", ".join(f"{dtype} {value:,.0f}" for dtype, value in flops.items())
    v = m.get("versions", {})
    versions = ", ".join(f"{k} {v[k]}" for k in ("python", "torch", "transformers", "accelerate", "torchmetrics",
                                                  "vqstack") if v.get(k))
    commit = m.get("commit")
    if commit:
        versions += f" (commit {commit}{', with uncommitted changes' if m.get('dirty') else ''})"
    kind = ("**--quick smoke test: reduced sizes, not benchmark numbers**" if record.get("quick")
            else "full run")
    seconds = f", {record['seconds']:.0f} s" if record.get("seconds") is not None else ""
    return (f"Machine: {m.get('cpu', '?')}, {m.get('logical_cores', '?')} logical cores, "
            f"{m.get('torch_threads', '?')} torch threads, {gpu}{load}; matmul {matmul} GFLOPS "
            f"({m.get('matmul_size', 2048)}² on {m.get('device', 'cpu')}). {versions}. {when(m)}, {kind}{seconds}. "
            f"Reference: {reference}.")


def relative(path) -> str:
    """``path`` (a relative one is from the repository root, where the benchmarks run) from the repository root."""
    path = Path(path)
    path = (path if path.is_absolute() else ROOT / path).resolve()
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return os.path.relpath(path, ROOT)


# --- table helpers ----------------------------------------------------------------------------------------------


def table(header: list[str], rows: list[list], left: int = 1) -> str:
    """A markdown table; the first ``left`` columns left-aligned, the rest (numbers) right-aligned."""
    align = ["---"] * left + ["---:"] * (len(header) - left)
    lines = [" | ".join(header), "|".join(align)] + [" | ".join(cell(value) for value in row) for row in rows]
    return "\n".join(f"| {line} |" if i != 1 else f"|{line}|" for i, line in enumerate(lines))


def cell(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def num(value, spec: str = ".3g", suffix: str = "") -> str:
    return "–" if value is None else f"{value:{spec}}{suffix}"


def pct(value) -> str:
    return "–" if value is None else f"{100 * value:.0f} %"


def option(command: list[str], flag: str, default=None):
    """The value given to ``flag`` on ``command`` (its default when absent)."""
    return command[command.index(flag) + 1] if flag in command[:-1] else default


@dataclass
class Section:
    title: str
    intro: str
    build: Callable[[dict, dict], str]  # (result, record) -> tables and the sentences that go with them
    reference: Callable[[dict, dict], str]  # (result, record) -> what the ratios are against
    parts: list[tuple[str, str | None]] = field(default_factory=list)  # (result file name, sub-heading)
    why: str = ""
    needs: str = ""  # what run_all needs to run it, for the "not measured yet" line
    not_quick: tuple[str, ...] = ()  # parts a --quick run skips


# --- one builder per benchmark: (result, record) -> markdown ---------------------------------------------------

TIME_TARGET, MEMORY_TARGET = {256: 0.6, 8: 0.25}, 0.2  # ours / reference, from the issue that set them


def quantizer_speed(result: dict, record: dict) -> str:
    runs = {(r["impl"], r["dim"]): r for r in result.get("results", [])}
    ratios = {(r["ours"], r["dim"]): r for r in result.get("ratios", [])}
    quick = record.get("quick")

    def ms(impl, dim):
        r = runs.get((impl, dim))
        return "–" if r is None else "error" if "error" in r else f"{r['time_ms']:.0f} ms"

    rows = []
    for dim in sorted({dim for _, dim in runs}, reverse=True):
        vq, ema = ratios.get(("vqstack-vq", dim)), ratios.get(("vqstack-ema", dim))
        if vq and ema:
            ref, ours = runs[(vq["reference"], dim)], [runs[(impl, dim)] for impl in ("vqstack-vq", "vqstack-ema")]
            time_target = "" if quick else f" (≤ {TIME_TARGET.get(dim, '?')})"
            memory_target = "" if quick else f" (≤ {MEMORY_TARGET})"
            memory = f"{ours[0]['peak_mem_mb']:.0f} / {ours[1]['peak_mem_mb']:.0f} MB vs {ref['peak_mem_mb']:.0f} MB"
            ratio_cells = [f"{vq['time_ratio']:.3f} / {ema['time_ratio']:.3f}{time_target}", memory,
                           f"{vq['mem_ratio']:.3f} / {ema['mem_ratio']:.3f}{memory_target}"]
        else:
            ratio_cells = ["–", "–", "–"]
        rows.append([dim] + [ms(impl, dim) for impl in ("vqstack-vq", "vqstack-ema", "vqpytorch-learnable",
                                                         "vqpytorch-ema")] + ratio_cells)
    header = ["dim", "vqstack `vq`", "vqstack `ema`", "reference (learnable)", "reference (EMA)",
              "time ratio `vq` / `ema`" + ("" if quick else " (target)"), "memory: ours / reference",
              "memory ratio" + ("" if quick else " (target)")]
    errors = [f"{r['impl']} at dim {r['dim']}: {' '.join(r['error'])}" for r in runs.values() if "error" in r]
    return "\n\n".join(filter(None, [
        f"{result['vectors']:,} vectors against {result['codes']:,} codes on {result['device']}, median of "
        f"{result['reps']} step(s) after one warm-up; load average {num(result.get('load_average'), '.2f')}.",
        table(header, rows), errors and "Failed cases: " + "; ".join(errors) + "."]))


def quantizer_speed_reference(result: dict, record: dict) -> str:
    version = result.get("vector_quantize_pytorch")
    if not version:
        return "vector-quantize-pytorch was not installed, so there are no ratios"
    return (f"vector-quantize-pytorch {version} `VectorQuantize`, the faster (by time) of its EMA and learnable "
            f"configurations at each dim; both memory ratios are against that one")


def train_speed(result: dict, record: dict) -> str:
    runs = result.get("runs")
    perceptual = (runs[0].get("perceptual") or "off") if runs else "ST-LPIPS VGG"  # results before runs: base's
    rows = [[phase, result.get(f"images_per_sec_{key}")] + [(result.get(f"forwards_per_step_{key}") or {}).get(net)
                                                           for net in ("encoder", "decoder", "discriminator",
                                                                       "perceptual")]
            for phase, key in (("before `--disc-start`", "before_disc"), ("with the discriminator", "with_disc"))]
    workers = f", {result['num_workers']} data loader workers" if "num_workers" in result else ""
    return "\n\n".join(filter(None, [
        f"{result['preset']} preset, {result['resolution']}×{result['resolution']}, batch {result['batch_size']}, "
        f"mixed precision {result['mixed_precision']}{workers}, on {result['device']}; data: "
        f"{relative(result['data'])}.",
        table(["phase", "images/s", "encoder", "decoder", "discriminator", f"perceptual ({perceptual})"], rows),
        train_speed_options(result)]))


def train_speed_options(result: dict) -> str:
    """The presets × speed options table, when the run measured more than one (each against its preset's
    baseline from the same run)."""
    runs = result.get("runs") or []
    if len(runs) < 2:
        return ""
    rows, failed = [], []
    for run in runs:
        if "error" in run:
            failed.append(f"{run['preset']} `{run['variant']}`: {run['error']}")
            continue
        rows.append([run["preset"], f"`{run['variant']}`", run["images_per_sec_before_disc"],
                     num(run.get("ratio_before_disc"), ".2f", "×"), run["images_per_sec_with_disc"],
                     num(run.get("ratio_with_disc"), ".2f", "×"), pct(run.get("data_wait_share_with_disc")),
                     num(run.get("first_step_seconds"), ".1f")])
    load = (f" Load average {result['load_average_before']:.2f} before and {result['load_average_after']:.2f} after."
            if result.get("load_average_before") is not None else "")
    repeats = f", best of {result['repeats']} interleaved runs" if result.get("repeats", 1) > 1 else ""
    threads = result.get("threads", "?")
    return "\n\n".join(filter(None, [
        f"Speed options: median step time over about {result['steps']} steps per half{repeats}, {threads} torch "
        f"thread{'' if threads == 1 else 's'}; × is images/s over the same preset's `baseline` in this run; waiting "
        f"for data is the share of the step time spent getting the next batch; the first step includes start-up (and "
        f"compilation with `compile`).{load}",
        table(["preset", "variant", "images/s before `--disc-start`", "×", "images/s with the discriminator", "×",
               "waiting for data", "first step (s)"], rows, left=2),
        failed and "Failed: " + "; ".join(failed) + "."]))


CACHES = {"preallocated": "", "dynamic": ", DynamicCache", "static": ", StaticCache",
          "none": ", no cache (re-runs the prefix)"}


def sampling_speed(result: dict, record: dict) -> str:
    rows = [[f"batch {r['batch']}{', CFG' if r['cfg'] else ''}{CACHES.get(r['cache'], ', ' + r['cache'])}",
             r["tokens"], r["seconds"], r["tokens_per_s"], r["images_per_s"], r["gflops_achieved"],
             f"{r['x_floor']} ({r['floor_bound']})", r.get("x_gemm", "")] for r in result["results"]]
    s = result["summary"]
    model = result["model"]
    batches = sorted({int(key[5:].split("_")[0]) for key in s if key.startswith("batch") and "_x_floor" in key})
    goals = "; ".join(f"batch {b}: {s[f'batch{b}_x_floor']}× unguided, {s[f'batch{b}_cfg_x_floor']}× CFG "
                      f"(target ≤ {s['x_floor_target_batch64'] if b == 64 else s['x_floor_target']:g})"
                      for b in batches if f"batch{b}_x_floor" in s)
    cfg = ", ".join(f"{s[key]}× at batch {key.removeprefix('cfg_cost_batch')}" for key in s
                    if key.startswith("cfg_cost_batch"))
    forward = (f" LlamaModel.forward with DynamicCache takes {s['transformers_forward_x_batch8']}× our decode step's "
               f"time at batch 8." if "transformers_forward_x_batch8" in s else "")
    return "\n\n".join([
        f"{model['depth']} layers, width {model['dim']}, vocab {model['vocab_size']}, {model['seq_len']} tokens per "
        f"image, {result['dtype']} on {result['device']} ({result['device_name']}), {result['threads']} threads, "
        f"best of {result['reps']} run(s). Floors measured in the same run: matmul {result['matmul_gflops']} GFLOPS, "
        f"memory {result['memory_gbps']} GB/s; CPU pressure {result.get('cpu_pressure_before')} before and "
        f"{result.get('cpu_pressure_after')} after (0 = no other process waited for a CPU).",
        table(["case", "tokens", "seconds", "tokens/s", "images/s", "GFLOPS", "× floor (bound)", "× matmuls"], rows),
        f"× floor: {goals}. CFG cost: {cfg} (target ≤ {s['cfg_cost_target']}×). KV cache vs no cache at batch 8, "
        f"over the first {s['cache_speedup_over_tokens']} tokens: {s['cache_speedup_batch8']}× (target ≥ "
        f"{s['cache_speedup_target']:g}×).{forward}"])


def hair_colour(result: dict, record: dict) -> str:
    scales = sorted((key for key in result if key.startswith("samples_cfg_")),
                    key=lambda key: -float(key.removeprefix("samples_cfg_")))
    sets = [(f"guidance {key.removeprefix('samples_cfg_')}", key) for key in scales] + [
        ("real faces, same check (reference)", "real_faces"),
        ("real faces through the tokenizer (reference)", "reconstructed_faces")]
    command = record["command"]
    summary = table(["samples", "followed (mean over colours)"], [[label, pct(result[key]["mean_over_colours"])]
                                                                  for label, key in sets])
    per_colour = table(["hair colour"] + [label.removesuffix(" (reference)") for label, _ in sets],
                       [[colour] + [pct(result[key]["per_colour"].get(colour)) for _, key in sets]
                        for colour in result["colours"]])
    return "\n\n".join([
        f"{option(command, '--n', 64)} samples per colour, {len(result['colours'])} colours (chance "
        f"{pct(result['chance'])}), centres from {result['tagged_faces']:,} tagged faces; tokenizer "
        f"`{option(command, '--tokenizer')}`, prior `{option(command, '--prior')}`.", summary, "Per colour:",
        per_colour])


def inpaint_candidates(result: dict, record: dict) -> str:
    keys = sorted((key for key in result if key.startswith("candidates_")),
                  key=lambda key: int(key.removeprefix("candidates_")))
    rows = [[key.removeprefix("candidates_"), result[key]["st_lpips"], result[key]["edge_l1"]] for key in keys]
    height, width = result["image_size"]
    return "\n\n".join([
        f"{result['faces']} held-out faces at {height}×{width}, a hole of {result['hole_tokens']} tokens; tokenizer "
        f"`{option(record['command'], '--tokenizer')}`, prior `{option(record['command'], '--prior')}`.",
        table(["candidates", "ST-LPIPS (VGG) to the original", "edge L1 (0–255)"], rows)])


def tokenizer_eval(result: dict, record: dict) -> str:
    values = [[f"`{key}`", value] for key, value in result.items()
              if isinstance(value, float) and key not in ("resolution", "images")]
    images = f"{result['images']:,}" if "images" in result else "All"
    parts = [f"{images} faces at {result.get('resolution')}×{result.get('resolution')}; "
             f"tokenizer `{option(record['command'], '--tokenizer')}`.", table(["metric", "value"], values)]
    for key, classes in result.items():
        if key.endswith("/per_class"):
            parts += [f"Per class of `{key.removesuffix('/per_class')}` (accuracy on held-out originals → on "
                      f"their reconstructions):",
                      table(["class", "share of tags", "real", "reconstructed", "ratio", "reconstructions taken for"],
                            [[name, pct(c.get("share")), c.get("real"), c.get("recon"), c.get("ratio"),
                              c.get("recon_mistaken_for")] for name, c in classes.items()])]
    return "\n\n".join(parts)


SHOOTOUT_COLUMNS = [("psnr", "PSNR (dB)"), ("ssim", "SSIM"), ("stlpips", "ST-LPIPS"), ("fd-vgg", "FD-VGG"),
                    ("colour-hist", "colour-hist"), ("usage", "usage"), ("perplexity", "perplexity")]


def stored(record: dict, metric: str, value):
    """A stored value, or "withdrawn" where the stored run withdraws that metric (its note says why)."""
    return "withdrawn" if metric in record.get("withdrawn", ()) else value


def quantizer_shootout(result: dict, record: dict) -> str:
    rows = result["results"]
    attributes = sorted({key for row in rows for key in row if key.startswith("attr:") and
                         key.endswith(("/real", "/recon", "/worst-ratio"))})
    columns = [(key, title) for key, title in SHOOTOUT_COLUMNS if any(key in row for row in rows)]
    columns += [(key, f"`{key}`") for key in attributes]
    reference = next((row for row in rows if row["quantizer"] == "vqpytorch"), None)
    body = [[f"`{row['quantizer']}`", row["seconds_per_step"],
             f"{row['seconds_per_step'] / reference['seconds_per_step']:.2f}" if reference else "–"]
            + [stored(record, key, row.get(key)) for key, _ in columns] for row in rows]
    data = "generated images (--quick)" if record.get("quick") else f"`{relative(result['data'])}`"
    return "\n\n".join([
        f"{result['steps']} steps each at batch {result['batch_size']}, seed {result['seed']}, on {data}; metrics on "
        f"the last {result['holdout']} images, which no run trains on; {result.get('threads')} threads.",
        table(["entry", "s/step", "× reference"] + [title for _, title in columns], body)])


def shootout_reference(result: dict, record: dict) -> str:
    trick = any(row.get("rotation_trick") for row in result["results"] if row["quantizer"] == "vqpytorch")
    version = record["machine"].get("versions", {}).get("vector-quantize-pytorch") or ""
    return (f"vector-quantize-pytorch {version} `VectorQuantize` with rotation_trick={trick}, entry `vqpytorch` "
            f"(× reference = seconds per step over its seconds per step)")


def colour_ablation(result: dict, record: dict) -> str:
    rows = result["results"]
    body = [[f"`{row['variant']}`", row.get("psnr"), row.get("usage"), row.get("colour-hist"),
             row.get("attr:hair/real"), row.get("attr:hair/recon"), row.get("attr:hair/worst-ratio")]
            for row in rows]
    colours = sorted({colour for row in rows for colour in row.get("hair", {})})
    per_colour = table(["hair colour"] + [f"`{row['variant']}`" for row in rows],
                       [[colour] + [row.get("hair", {}).get(colour, "–").replace("->", " → ") for row in rows]
                        for colour in colours])
    return "\n\n".join([
        f"{result['steps']} steps per variant at batch {result['batch_size']}, seed {result['seed']}, on "
        f"`{relative(result['data'])}`.",
        table(["variant", "PSNR (dB)", "usage", "colour-hist", "hair: real", "hair: reconstructed", "worst ratio"],
              body),
        "Per colour, classifier accuracy on held-out originals → on their reconstructions:", per_colour])


def equal_time(result: dict, record: dict) -> str:
    rows = result["results"]
    body = [[f"`{r['entry']}`", r["steps"], r["images_per_sec"], r.get("psnr"), r.get("ssim"), r.get("stlpips"),
             r.get("usage"), r.get("hair_kept"),
             f"{r['hair_worst_colour']} {r['hair_worst_kept']}" if "hair_worst_colour" in r else "–",
             ", ".join(k for k, v in r["goals"]["met"].items() if not v) or "all met" if "goals" in r else "anchor"]
            for r in rows]
    return "\n\n".join([
        f"Every entry trained for `--time-budget {result['budget']}`, {result['jobs']} at a time with "
        f"{result['threads_per_entry']} thread(s) each, batch {result['batch_size']}, seed {result['seed']}, on "
        f"`{relative(result['data'])}`; metrics on its last {result['holdout']} faces, which no run trained on.",
        table(["entry", "steps", "images/s", "PSNR (dB)", "SSIM", "ST-LPIPS", "usage", "hair kept",
               "worst colour (kept)", "goals missed"], body)])


def maskgit_sampling(result: dict, record: dict) -> str:
    comparison = result["maskgit_vs_ar"]
    if "skipped" in comparison:
        return comparison["skipped"]
    rows = [[f"batch {r['batch']}{', CFG' if r['cfg'] else ''}", r["maskgit_steps"], r["maskgit_seconds"],
             r["ar_seconds"], r["ratio"], r["maskgit_compute_floor_s"], r["ratio_at_maskgit_floor"]]
            for r in comparison["results"]]
    model, sizes = result["model"], comparison["parameters"]
    return "\n\n".join([
        f"Both at {model['depth']} layers, width {model['dim']}, vocab {model['vocab_size']}, {model['seq_len']} "
        f"tokens per image ({sizes['ar'] / 1e6:.1f}M parameters ar, {sizes['maskgit'] / 1e6:.1f}M maskgit), "
        f"{result['dtype']} on {result['device']}, {result['threads']} threads, best of {result['reps']}; matmul "
        f"{result['matmul_gflops']} GFLOPS; CPU pressure {result.get('cpu_pressure_before')} before and "
        f"{result.get('cpu_pressure_after')} after.",
        table(["case", "maskgit passes", "maskgit s", "ar s", "ratio (target ≤ 0.25)", "maskgit compute floor s",
               "floor / ar s"], rows)])


def inpaint_maskgit_vs_ar(result: dict, record: dict) -> str:
    names = ["whole face through the tokenizer", "ar", "maskgit"]
    rows = [[name, result[name]["st_lpips"], result[name]["seam_l1"], result[name]["fd_vgg"],
             result[name].get("seconds_per_face", "–")] for name in names]
    height, width = result["image_size"]
    grid = f" The grid: `{result['grid_file']}`." if "grid_file" in result else ""
    return "\n\n".join([
        f"{result['faces']} held-out faces at {height}×{width}, the top {result['masked_token_rows']} of "
        f"{result['grid'][0]} token rows masked; tokenizer `{option(record['command'], '--tokenizer')}`, ar "
        f"`{option(record['command'], '--ar')}`, maskgit `{option(record['command'], '--maskgit')}`.{grid}",
        table(["fill", "ST-LPIPS (VGG) to the original", "seam L1 (0–255)", "FD-VGG to the originals",
               "s per face"], rows)])


def restoration_compare(result: dict, record: dict) -> str:
    names = ["degraded", "tokenizer", "restorer f=0", "restorer f=0.5", "restorer f=1"]
    rows = [[case, name, *(stored(record, m, answers[name][m]) for m in ("psnr", "ssim", "stlpips", "fd-vgg"))]
            for case, answers in result["cases"].items() for name in names]
    speed = result["seconds_per_image"]
    grid = f" The grid: `{result['grid_file']}`." if "grid_file" in result else ""
    return "\n\n".join([
        f"{result['faces']} held-out faces at {result['image_size']}×{result['image_size']}; tokenizer "
        f"`{option(record['command'], '--tokenizer')}`, restorer `{option(record['command'], '--restorer')}`; "
        f"restoring takes {speed['batched'] * 1000:.1f} ms per image batched and {speed['one_by_one'] * 1000:.1f} ms "
        f"one by one ({result['threads']} threads).{grid}",
        table(["damage", "answer", "PSNR (dB)", "SSIM", "ST-LPIPS (VGG)", "FD-VGG"], rows, left=2)])


# --- the page: static text around each benchmark's tables -------------------------------------------------------

def quality_time(result: dict, record: dict) -> str:
    def setting(chosen: dict) -> str:
        return f"T {chosen['temperature']:g}" if "temperature" in chosen else f"{chosen['steps']} passes"

    batches = [str(b) for b in result["batches"]]
    rows = [[r["prior"], setting(r), r["fd_vgg"],
             r["token_nll"]] + [r["seconds_per_image"][b] for b in batches] for r in result["rows"]]
    regimes = [f"batch {b}: {v['faster']} is faster at FD-VGG ≤ {v['fd_vgg_within']:g} ("
               + ", ".join(f"{name} {t} s/image at {setting(v['settings'][name])}"
                           for name, t in v["seconds_per_image"].items() if t is not None) + ")"
               for b, v in result["regimes"].items()]
    return "\n\n".join([
        f"{result['n']} samples per setting, {result['machine']}, torch {result['torch']}; decoding by the tokenizer "
        f"(not counted above): " + ", ".join(f"{t} s/image at batch {b}" for b, t in
                                             result["decode_s_per_image"].items()) + ".",
        table(["prior", "setting", "FD-VGG", "token NLL (ar)"] + [f"s/image, batch {b}" for b in batches], rows, 2),
        "Equal quality (within 5 % of the best FD-VGG either prior reached): " + "; ".join(regimes) + "."])


TRAINED = " --tokenizer DIR --prior DIR"


def fixed(text: str) -> Callable[[dict, dict], str]:
    """A reference that does not depend on the result."""
    return lambda result, record: text

SECTIONS = [
    Section("Quantizer speed and memory", """
`benchmarks/quantizer_speed.py` times one training step (forward + backward, EMA updates included) of 16,384 vectors
(z of shape 16×D×32×32) against 16,384 codes at D = 256 and D = 8: the median of `--reps` steps after a warm-up.
Peak memory is the resident-set growth of a fresh process per case (`torch.cuda.max_memory_allocated` growth on a
GPU). The reference is vector-quantize-pytorch's `VectorQuantize`, in its default EMA configuration and with a
learnable codebook (`learnable_codebook=True, ema_update=False`); the faster of the two is the reference for the
ratios. `--quick` shrinks it to 1,024 vectors against 1,024 codes and one step.""",
            quantizer_speed, quantizer_speed_reference, [("quantizer_speed", None)], why="""
Why: the reference computes a full 16k × 16k distance table (`cdist`) and multiplies by one-hot matrices, about
6 GB. vqstack searches in chunks of at most 16 MB of distances (`addmm(‖e‖², z, eᵀ, α=-2)` in fp32, reduced with
`torch.min` into preallocated outputs), gathers the chosen codes, and counts with `bincount` / `index_add_`.
`python benchmarks/quantizer_speed.py --sweep-chunks` reproduces the chunk-size choice. Under heavy load from other
jobs the dim-8 `vq` ratio has been measured as high as 0.248: rerun on an idle machine before drawing conclusions."""),

    Section("Quantizer shoot-out", """
`benchmarks/quantizer_shootout.py` trains the same small tokenizer (`recipes/vqgan_anime.py`'s tiny preset: 32×32
images, f = 4, 8×8 tokens, GAN and ST-LPIPS loss as the preset sets them) once per quantizer, with only the
quantizer changed, all at 256 codes (FSQ 8×8×4, LFQ 8 bits), on the same data, steps and seed. The reference,
`vqpytorch`, is vector-quantize-pytorch's `VectorQuantize` in the same tokenizer with `rotation_trick=False`, so its
gradients are the straight-through ones every other entry uses. Metrics (`vqstack.evaluation`) on held-out images
the runs never train on: PSNR, SSIM, ST-LPIPS (VGG16), FD-VGG, colour-histogram distance, codebook usage and
perplexity, seconds per training step, and the attribute classifier's accuracy on originals and reconstructions.
ST-LPIPS and FD-VGG are offline stand-ins, not LPIPS and FID (docs/evaluation.md). `--quick` trains every entry for
4 steps on generated images, whatever `--data` says, so a quick run has only the first table. The tiny preset now
whitens colours and uses one GroupNorm group (next section), so every entry does. On 2 CPU cores the evaluation
(FD-VGG at 224 px) takes longer than 300 training steps; the attribute classifier is trained once per data set and
cached. The seconds per step of the anime runs were measured while other jobs shared the 2 cores for part of them
(`vq` and `vq-dim8+restarts` most): compare their quality columns, not their speeds. The CIFAR-10 run had the
machine to itself.

What it set. On both data sets `vq` with restarts and dim-8 codes beats dim 16 on PSNR and FD-VGG (anime
+0.7 dB, FD-VGG 734 against 773; CIFAR-10 +0.4 dB, 760 against 817), so the tiny preset's codes are dim 8 now.
FSQ comes close (best class and hair fidelity, FD-VGG 20–40 behind), `ema` is a few tenths of a dB behind, `lfq`
is last on every quality column, and the reference leaves 30–55 % of its codes unused at the quality of our
dim-16 `vq`. These are single runs of 300 steps: a few tenths of a dB is within what another seed would move.
On CIFAR-10, 300 steps keep only about 40 % of the class classifier's 72 %: the class-level fidelity bar is far
off at this budget for every quantizer.""",
            quantizer_shootout, shootout_reference,
            [("quantizer_shootout_anime", "Anime faces (hair colour)"), ("quantizer_shootout_cifar10",
                                                                         "CIFAR-10 (class)")],
            not_quick=("quantizer_shootout_cifar10",)),

    Section("What makes a tokenizer lose hair colour?", """
`benchmarks/colour_ablation.py` trains the tiny preset with one thing changed at a time (same data, steps and
seed) and scores each by PSNR, codebook usage, colour-histogram distance and a hair-colour classifier (trained once
on the data set's own tags, shared by every variant) on held-out originals and their reconstructions, per colour.
The worst ratio is the smallest reconstructed / real accuracy over the colours with at least 1 % of the tagged
images; the presets' bar is 0.9. `baseline` is the tiny preset as it was (taming's 32 GroupNorm groups, RGB) with
k-means init and dead-code restarts; `groups-8` / `groups-1` change the GroupNorm groups (32 groups of the tiny
net's 32 channels are an InstanceNorm); `codes-1024-dim8` gives each token 10 bits instead of 8; `groups-1+whiten`
is the tiny preset as shipped then: one group and colour whitening (with dim-16 codes; the shoot-out above has
since moved the preset to dim 8).

What it shows. The colour axes of the faces are far from balanced: luminance holds 88 % of the pixel variance,
blue-orange 10 %, green-magenta 2.5 %. The baseline's reconstructions keep 15 % of the green-magenta variance, so
green, purple, red and pink hair come back grey-blue or orange. It is not the codebook: 4× the codes gains 0.8 dB and
no colour, and an autoencoder with no quantizer at all (a side measurement with a plain training loop, 300 steps)
keeps 7 % of that axis with an L1 loss, 7 % with L2 and 7 % with a patch-mean chroma loss weighted 10×. The network
learns the colour axes in the order of their variance, and the signal of an axis reaches the weights through the
input and through the loss: whitening the encoder's input alone keeps 4 %, weighting the loss alone 5 %, both 80 %.
So the presets whiten: the tokenizer reads and writes colours with every axis at unit variance (measured from the
first 1,024 training images, stored in its config) and the pixel loss compares whitened images
(`vqstack/autoencoders/colour.py`). """,
            colour_ablation, fixed("the `baseline` variant; per colour, the same classifier on the real faces (the "
                                   "worst ratio is reconstructed / real)"),
            [("colour_ablation", None)]),

    Section("Tokenizers at equal wall-clock, against taming-transformers", """
`benchmarks/equal_time.py`: each entry trains `recipes/vqgan_anime.py` under the same `--time-budget` (the small
preset, its variants, and taming-transformers' own Encoder/Decoder/VectorQuantizer2 with L1 + codebook loss as the
anchor, from `pip install --no-deps taming-transformers-rom1504`), then all are measured on the same held-out faces:
PSNR, SSIM, ST-LPIPS (VGG16), codebook usage, and the hair classifier's accuracy on reconstructions over its
accuracy on the originals (overall, and for the worst colour). The goals against the anchor: PSNR +2.5 dB,
ST-LPIPS at most 0.6×, usage at least 0.9, hair kept at least 0.9 overall and 0.8 for every colour. `--quick`: 20
seconds per entry on generated images.""",
            equal_time, fixed("the `taming` entry, trained in the same run under the same budget"),
            [("equal_time", None)], why="docs/training.md discusses the runs and what each variant changes."),

    Section("Training throughput and forward passes per step", """
`benchmarks/train_speed.py` runs `recipes/vqgan_anime.py` itself (by default the base preset, 64×64 anime faces,
batch 8, 8 optimizer steps per half, the discriminator starting half-way), counts the forward calls of the encoder,
decoder, discriminator and perceptual network per optimizer step with global module forward hooks, and times steps
through the `vqstack_on_step_end` hook (median step time). With `--presets` and `--variants` it runs every preset
with every speed option (`channels_last`, `bf16`, `compile`, `workers0`, ...) in one process and gives each as a
ratio to its preset's `baseline`, with the share of each step spent waiting for the data loader. On a GPU run_all
runs it with `--mixed-precision bf16 --batch-size 32 --steps 20`; `--quick` runs the tiny preset at 32×32, batch 4,
2 steps per half.""",
            train_speed, fixed("each preset's `baseline` variant in the same run for the × columns; absolute "
                               "throughput on this machine otherwise; forward counts are exact"),
            [("train_speed", None)], why="""
With the discriminator, it runs 3 times per step: once in the generator step (frozen), on real and fake images in
its own step. The base preset (ch 128, `ch_mult` [1, 1, 2, 4], 2 ResNet blocks per level, attention at 8×8, f = 8)
is a GPU model; on CPU cores use `--preset small` (the same layout at 64 px on the tiny net's widths, AlexNet
ST-LPIPS: about a twelfth of base's FLOPs per image) or `--preset tiny` at 32 px (see docs/training.md)."""),

    Section("Prior sampling speed", """
`benchmarks/sampling_speed.py` samples with the `ar` prior at its default size (8 layers, width 512, 8 heads, vocab
1024, 256 tokens per image = a 16×16 grid) with random weights: speed does not depend on what it learnt. Each case is
the fastest of `--reps` runs after a warm-up. Batches 1, 8 and 64, each unguided and with classifier-free guidance
(both halves in one forward of twice the batch); at batch 8 also transformers' DynamicCache / StaticCache instead of
the preallocated cache, and the loop without a KV cache, which re-runs the whole prefix every step. × floor is the
time over the larger of two floors measured in the same run: the run's FLOPs at large-matmul throughput, and its
compulsory memory traffic (every weight once per step, the KV cache read once per step) at the bandwidth of a large
reduction; small-batch decoding is bound by the second. `--quick`: batches 1 and 8, one run each, and the no-cache
loop over the first 64 tokens only, against the cached loop over the same 64.""",
            sampling_speed, fixed("the floor for × floor, the no-cache loop for the cache speed-up, the unguided run "
                                  "for the CFG cost"),
            [("sampling_speed", None)], why="""
Runs vary by about ±0.15 s; under load from other jobs the timings are meaningless (the JSON records CPU pressure so
such runs can be discarded). × matmuls is the time over the run's matmuls alone (`gemm_s`: one decode step's matmuls
at that batch, measured in the same run, times the steps): what our decode step adds around them.

**Why two machines differ so much.** On 2026-11-27 a 2-core machine measured matmul 381 GFLOPS and memory 24.3 GB/s,
and batch 1 / batch 8 sampled in 1.56 s / 2.89 s (1.28× / 1.9× the floor). The machine of the 2026-12-08 run above
(AMD EPYC Zen 4, 2 cores, torch 2.14.1) measures 170 GFLOPS and 32.6 GB/s, and the 11-27 sampler itself (commit
4daf59a, run side by side with ours, 2 threads) takes 1.83 s at batch 1 and 3.04 s at batch 8 for 128 tokens there,
about 3.7 s and 6.1 s for 256: the code did not get slower; the machine is different. What differs is not the
bandwidth a plain sum reaches but the bandwidth at which small-batch matmuls read the weights: the model's 109 MB of
weights, read once per step as decoding does, stream at 15.9 / 10.3 / 6.3 / 4.7 GB/s at 1 / 2 / 8 / 16 rows on one
thread and 15.1 / 9.2 / 7.4 / 5.6 GB/s on two (MKL sgemm, (in, out) weights; the (out, in) layout of nn.Linear is
slower still at 1 row). A second thread adds nothing: one core's outstanding memory requests, not the memory, set the
pace. The floors assume the 32.6 GB/s of a sum, which no matmul kernel here reaches below 64 rows, so x floor stays at
3× or more on this machine whatever runs around the matmuls; × matmuls (1.36 at batch 1) is the part our code
controls.

**Guidance.** Guided decoding runs the conditional and unconditional halves as one batch of twice the rows, so its
cost is the cost of matmuls at 2n rows against n. Where those are bound by reading the weights once (the 11-27
machine), the second half rides along: 1.09×. Here 16 rows cost 1.32× the time of 8 (19.4 vs 14.7 ms per step, two
threads), and the measured CFG cost follows (1.37× at batch 8); the 11-27 sampler shows the same on this machine (1.17–
1.42×), so no change in the condition prefix or the dropouts made guidance dearer. At batch 64 the run is
compute-bound and guidance doubles the FLOPs: 2× is its floor, and no implementation brings it under 1.2×.

**Our decode step** (vqstack/priors/decode.py) replaces `LlamaModel.forward` in the sampling loop: one fused q/k/v and
one gate/up matmul per layer, (in, out) weights, RoPE from a table, no mask or cache objects. Against the sampler it
replaced (same run): 0.66× the time at batch 1, about equal at batch 8, where the matmuls dominate. `torch.compile`
measured on the same matmul chain at 8 rows, one thread: `mode="max-autotune"` (inductor's C++ GEMM template over
prepacked weights) 13.9 ms per step against 19.5 ms eager (1.4×) after 19 s of compiling; the default mode 20.0 vs
21.7 ms. Not adopted yet: it needs static shapes (attention over every cache slot behind a mask), recompiles per batch
size, and its compile time only pays back after about a minute of sampling."""),

    Section("Does the prior follow its condition?", """
`benchmarks/hair_colour.py`: for a trained anime prior, the share of samples whose top-third colour (mostly hair) is
nearest to the requested hair colour's centre over the real tagged faces, averaged over the hair colours of the
shared tags. The same rule applied to the real faces, and to the same faces after the tokenizer (encode, decode),
gives the reference figures: guided samples, more typical than real faces, can score above them.""",
            hair_colour, lambda result, record: f"real faces through the same check, and through the tokenizer; "
                                                f"chance {pct(result['chance'])}",
            [("hair_colour", None)], why="The sample grid per colour: docs/generation.md.", needs=TRAINED),

    Section("What the tokenizer loses: attribute fidelity", """
`vqstack eval --metrics psnr,colour-hist,attr:hair` on the anime faces: PSNR and colour-histogram distance of the
reconstructions, and a hair-colour classifier (trained once on the data set's own tags, then cached) scored on
held-out originals and on their reconstructions, overall and per colour. `--quick` scores the first 64 faces.""",
            tokenizer_eval, fixed("the classifier's accuracy on the held-out originals (`real`); ratio is "
                                  "reconstructed / real"),
            [("tokenizer_eval", None)], why="""
Other metrics of the same tokenizer (SSIM, ST-LPIPS, FD-VGG, precision and recall): `vqstack eval --metrics ...`,
docs/evaluation.md.""", needs=" --tokenizer DIR"),

    Section("Best-of-N inpainting", """
`benchmarks/inpaint_candidates.py`: anime faces the prior recipe held out (its `--val-fraction 0.01` /
`--val-seed 0` split) get a square hole over the middle half of the token grid, and the trained prior fills it with
1, 4 and 8 candidates, keeping the best by the likelihood of the known tokens after the hole. Per setting, averaged
over the faces: ST-LPIPS (VGG) between the repaired face and the original, and the mean absolute pixel difference
to the original in the hole's last token row and column (edge L1), the cells that meet the kept image below and to
the right, where raster-order sampling has seen nothing of what follows. A fill is not a reconstruction, so neither
reaches 0; lower means the fill agrees better with the face around it.""",
            inpaint_candidates, fixed("1 candidate (plain sampling)"), [("inpaint_candidates", None)],
            needs=TRAINED),

    Section("MaskGIT against ar: sampling speed", """
`benchmarks/sampling_speed.py --maskgit-only`: the `maskgit` prior of `plugins/vqstack-maskgit` and the built-in
`ar` at the same sizes, random weights, each timed through its public `generate` (ar with its KV cache) for 8 images
of 256 tokens, unguided and with classifier-free guidance, maskgit at 8 and 12 passes. The compute floor is
maskgit's FLOPs (every pass runs all 256 + prefix positions through every layer) at the measured matmul
throughput.""",
            maskgit_sampling, fixed("ar's `generate` in the same run (ratio = maskgit s / ar s)"),
            [("maskgit_sampling", None)], why="""
Why the target (≤ 0.25× ar) cannot hold on a CPU: maskgit does 8–12 full passes over 8 × 257 positions, about
0.9–1.4 TFLOP unguided, while ar's cached loop runs each position through the model once, 1/8 to 1/12 of that work,
in 256 small steps whose cost here is memory traffic. A CPU is compute-bound for maskgit, so its floor alone
exceeds ar's measured time (floor / ar s > 1).
On a GPU, ar's 256 sequential steps are latency-bound and maskgit's 8–12 large passes are not, which is where
MaskGIT's published speed-ups come from; not measured here (no GPU lent)."""),

    Section("Quality against time: ar temperatures, maskgit passes", """
`benchmarks/quality_time.py`: a trained `ar` and a trained `maskgit` prior over the same tokenizer sample without
labels or guidance; per setting FD-VGG of the samples against the real faces, the token NLL of the samples under the
ar prior (it favours low temperatures: read it beside FD-VGG) and the seconds per image at each batch size.
docs/generation.md plots it and says which prior to pick where.""",
            quality_time, fixed("the other prior at the same batch size"), [("quality_time", None)],
            needs=TRAINED + " --maskgit DIR"),

    Section("Inpainting the hair: ar against maskgit", """
`benchmarks/inpaint_maskgit_vs_ar.py`: the faces the prior recipe held out lose the top third of their token grid
(the hair) and each prior fills it, unconditioned, one sample per face with the same seeds; the original is pasted
back below. ar draws the hole first in raster order and sees nothing of the face under it; maskgit sees the whole
kept face in every pass. ST-LPIPS (VGG) between each repaired face and its original (mean), the mean absolute pixel
difference in the hole's last token row (the seam with the kept face), and FD-VGG between the repaired set and the
originals. For scale, the same numbers for the whole face through the tokenizer (encode, decode), which changes
every pixel where a repair changes only the top third.""",
            inpaint_maskgit_vs_ar, fixed("the whole faces through the tokenizer, for scale"),
            [("inpaint_maskgit_vs_ar", None)], needs=TRAINED + " --maskgit DIR"),

    Section("Restoration: the restorer against the obvious answers", """
`benchmarks/restoration_compare.py`: held-out faces (the last of the folder, which the restore recipe holds out)
damaged three fixed ways (×4 down plus noise 0.05; blur sigma 2; JPEG 20), each answered five ways: the damaged
image itself (bicubic upsampling for ×4), the plain tokenizer (encode and decode the damaged image), and the
restorer at fidelity 0, 0.5 and 1, decoded by the same frozen tokenizer. PSNR and SSIM against the clean face,
ST-LPIPS (VGG) and FD-VGG against the clean faces, every answer through 8 bits. docs/restoration.md discusses them.""",
            restoration_compare, fixed("the damaged image and the plain tokenizer, in the same run"),
            [("restoration_compare", None)], needs=" --tokenizer DIR --restorer DIR"),
]

STARTUP = """## Start-up

Wall-clock time of what a user types, median of 5 runs after one warm-up: before (commit 80526c2: everything
imported by `import vqstack`, `--device` defaults asking torch for CUDA), after (names imported on first use,
`--device` resolved when a command runs), and now (also: every plugin registers its components as
`"package.module:Class"` strings, imported when first built, and its package exports its names lazily).
Measured by hand, not by `run_all.py`.

| command | before | after | now |
|---|---:|---:|---:|
| `vqstack --help` | 4.28 s | 0.059 s | 0.11 s |
| `vqstack sample --help` | 4.14 s | 0.065 s | 0.15 s |
| `python -c "import vqstack"` | 3.85 s | 0.022 s | 0.08 s |
| `vqstack plugins` | 4.32 s | 4.27 s | 0.20 s |
| for scale: `python -c pass` / `python -c "import torch"` | | 0.019 s / 1.36 s | 0.04 s / 2.20 s |

The "now" column ran while the machine also ran a training (load average 3.2–3.4 on its 2 cores): the scale row shows
everything about 1.6 times slower than in the "after" run, which is why `--help` looks slower there; it imports the
same modules as then (and the small `vqstack.lazy`). Back to back with it, the code before registering by
reference took 7.94 s for `vqstack plugins` (against 0.20 s), so the gain is about 40 times at equal load.

`--help` imports only `vqstack`, `vqstack.core` and pluggy (about 37 ms of imports; `tests/test_startup.py` fails if
any `--help` imports torch). `vqstack plugins` used to import torch (1.4 s here) through every built-in plugin module
and, through `vqstack.priors.ar`, transformers (about 2.2 s, half of it torchvision and `torch._dynamo`, which
`transformers.video_utils` pulls in); the plugins in `plugins/` imported torch too, through their packages and
`vqstack.api`. Now the built-ins (`vqstack.quantizers`, ..., `vqstack.evaluation` for the `features` kind) and the
three plugins register `"module:Class"` strings, imported when a component is first built; their packages and
`vqstack.api` import their names on first use (`vqstack.api.lazy_exports`), and listing imports neither torch nor
transformers (`tests/test_startup.py` fails if it does, with the built-ins alone and with `plugins/`). docs/plugins.md
("Registering by reference") shows a plugin how.

Machine: AMD EPYC (Zen 4), 2 logical cores, no GPU; python 3.11.7, torch 2.14.1, transformers 5.25.0. Before and
after: 2026-12-07, shared with a benchmark run (load average 2.7–2.9). Now: 2026-12-08, shared with a training run.
To reproduce (median of the 5):

```
for i in 1 2 3 4 5 6; do /usr/bin/time -f %e .venv/bin/vqstack plugins > /dev/null; done   # drop the first
python -X importtime -c "from vqstack.cli import main; main(['plugins'])" 2>&1 >/dev/null | sort -t'|' -k2 -n | tail
```"""
