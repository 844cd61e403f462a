"""benchmarks/run_all.py and benchmarks/report.py: the page rendered from small hand-made result files (no benchmark
runs), and the machine description's measured matmul throughput."""
import argparse
import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import report  # noqa: E402
import run_all  # noqa: E402

MACHINE = {"date": "2026-11-28T10:00:00+00:00", "cpu": "Test CPU 9000", "logical_cores": 2, "torch_threads": 2,
           "gpu": None, "device": "cpu", "load_average": 0.5, "matmul_size": 2048,
           "matmul_gflops": {"float32": 381.2},
           "versions": {"python": "3.11.7", "torch": "2.14.1", "transformers": "5.24.0", "accelerate": "1.15.0",
                        "torchmetrics": "1.9.0", "vqstack": "0.1.0"}, "commit": "abc1234", "dirty": True}


def speed(impl, dim, ms, mb):
    return {"impl": impl, "dim": dim, "time_ms": ms, "min_ms": ms, "peak_mem_mb": mb}


RESULTS = {
    "quantizer_speed": {
        "device": "cpu", "vectors": 16384, "codes": 16384, "reps": 5, "load_average": 2.3,
        "vector_quantize_pytorch": "1.32.0",
        "results": [speed("vqstack-vq", 256, 693.0, 349.0), speed("vqstack-ema", 256, 707.0, 221.0),
                    speed("vqpytorch-ema", 256, 5511.0, 6600.0), speed("vqpytorch-learnable", 256, 5092.0, 6526.0)],
        "ratios": [{"dim": 256, "ours": "vqstack-vq", "reference": "vqpytorch-learnable", "time_ratio": 0.136,
                    "mem_ratio": 0.053},
                   {"dim": 256, "ours": "vqstack-ema", "reference": "vqpytorch-learnable", "time_ratio": 0.139,
                    "mem_ratio": 0.034}]},
    "sampling_speed": {
        "model": {"vocab_size": 1024, "seq_len": 256, "dim": 512, "depth": 8}, "dtype": "float32", "device": "cpu",
        "device_name": "x86_64", "threads": 2, "reps": 1, "matmul_gflops": 381.0, "memory_gbps": 24.3,
        "cpu_pressure_before": 0.0, "cpu_pressure_after": 0.0,
        "summary": {"x_floor_target": 1.3, "x_floor_target_batch64": 1.2, "cfg_cost_target": 1.2,
                    "batch1_x_floor": 1.5, "batch1_cfg_x_floor": 1.6, "batch8_x_floor": 1.9,
                    "batch8_cfg_x_floor": 1.7, "batch8_seconds": 2.89, "cache_speedup_batch8": 20.2,
                    "cache_speedup_over_tokens": 64, "cache_speedup_target": 10.0, "cfg_cost_batch1": 1.1,
                    "cfg_cost_batch8": 1.64},
        "results": [{"batch": 8, "cfg": cfg, "cache": cache, "tokens": 64, "seconds": 2.89, "tokens_per_s": 708.0,
                     "images_per_s": 2.77, "gflops_achieved": 50.0, "x_floor": 1.9, "floor_bound": "memory",
                     "x_gemm": 1.2}
                    for cfg, cache in ((False, "preallocated"), (True, "preallocated"), (False, "none"))]},
    "quantizer_shootout_anime": {
        "data": "../shared/data/anime-faces", "steps": 600, "batch_size": 32, "holdout": 512, "seed": 0, "threads": 2,
        "results": [{"quantizer": name, "seconds_per_step": s, "psnr": 21.3, "usage": 0.9, "attr:hair/real": 0.67,
                     "attr:hair/recon": 0.51} for name, s in (("vq", 0.5), ("vqpytorch", 1.0))]},
    "colour_ablation": {
        "data": "../shared/data/anime-faces", "steps": 2, "batch_size": 32, "seed": 0,
        "results": [{"variant": "baseline", "change": {}, "seconds_per_step": 1.2, "psnr": 20.1, "usage": 0.8,
                     "colour-hist": 0.4, "attr:hair/real": 0.67, "attr:hair/recon": 0.51,
                     "attr:hair/worst-ratio": 0.02, "hair": {"green": "0.66->0.01"}}]},
    "equal_time": {
        "data": "../shared/data/anime-faces", "budget": "20m", "jobs": 2, "threads_per_entry": 1, "batch_size": 32,
        "holdout": 512, "seed": 0,
        "results": [{"entry": "small", "steps": 351, "images_per_sec": 12.1, "psnr": 20.5, "ssim": 0.6,
                     "stlpips": 0.2, "usage": 0.95, "hair_kept": 0.93, "hair_worst_colour": "green",
                     "hair_worst_kept": 0.71, "goals": {"met": {"psnr": True, "hair_worst_colour": False}}},
                    {"entry": "taming", "steps": 254, "images_per_sec": 8.2, "psnr": 18.0, "ssim": 0.5,
                     "stlpips": 0.4, "usage": 0.1}]},
    "hair_colour": {
        "colours": ["blue", "green"], "chance": 0.5, "tagged_faces": 6781,
        **{key: {"mean_over_colours": 0.44, "mean_over_faces": 0.44, "per_colour": {"blue": 0.27, "green": 0.33}}
           for key in ("real_faces", "reconstructed_faces", "samples_cfg_1", "samples_cfg_3")}},
    "tokenizer_eval": {"psnr": 21.3, "colour-hist": 0.4, "images": 64, "resolution": 32,
                       "attr:hair/per_class": {"green": {"share": 0.05, "real": 0.66, "recon": 0.01, "ratio": 0.02,
                                                         "recon_mistaken_for": "blue"}}},
    "inpaint_candidates": {"faces": 64, "image_size": [32, 32], "hole_tokens": 16,
                           "candidates_1": {"st_lpips": 0.21, "edge_l1": 30.1},
                           "candidates_8": {"st_lpips": 0.19, "edge_l1": 25.4}},
    "maskgit_sampling": {
        "model": {"vocab_size": 1024, "seq_len": 256, "dim": 512, "depth": 8}, "dtype": "float32", "device": "cpu",
        "threads": 2, "reps": 3, "matmul_gflops": 189.5, "cpu_pressure_before": 0.0, "cpu_pressure_after": 0.0,
        "maskgit_vs_ar": {"parameters": {"ar": 28325888, "maskgit": 26407936}, "results": [
            {"batch": 8, "cfg": False, "maskgit_steps": 8, "maskgit_seconds": 5.978, "ar_seconds": 4.774,
             "ratio": 1.252, "ratio_target": 0.25, "maskgit_compute_floor_s": 4.895, "ratio_at_maskgit_floor": 1.025}]}},
    "quality_time": {
        "n": 256, "batches": [1, 8], "machine": "x86_64, 2 threads", "torch": "2.14.1",
        "decode_s_per_image": {"1": 0.004, "8": 0.002},
        "rows": [{"prior": "ar", "temperature": 1.0, "fd_vgg": 210.5, "token_nll": 5.61,
                  "seconds_per_image": {"1": 0.031, "8": 0.009}},
                 {"prior": "maskgit", "steps": 8, "fd_vgg": 215.0, "token_nll": 5.9,
                  "seconds_per_image": {"1": 0.012, "8": 0.011}}],
        "regimes": {"1": {"fd_vgg_within": 221.0, "faster": "maskgit",
                          "seconds_per_image": {"ar": 0.031, "maskgit": 0.012},
                          "settings": {"ar": {"temperature": 1.0}, "maskgit": {"steps": 8}}},
                    "8": {"fd_vgg_within": 221.0, "faster": "ar", "seconds_per_image": {"ar": 0.009, "maskgit": 0.011},
                          "settings": {"ar": {"temperature": 1.0}, "maskgit": {"steps": 8}}}}},
    "inpaint_maskgit_vs_ar": {
        "faces": 200, "image_size": [32, 32], "masked_token_rows": 3, "grid": [8, 8], "grid_file": "docs/g.png",
        **{name: {"st_lpips": 0.2, "seam_l1": 20.0, "fd_vgg": 100.0} for name in ("whole face through the tokenizer", "ar")},
        "maskgit": {"st_lpips": 0.15, "seam_l1": 12.5, "fd_vgg": 80.0, "seconds_per_face": 0.5}},
    "restoration_compare": {
        "faces": 200, "image_size": 32, "threads": 2, "grid_file": "docs/r.png",
        "seconds_per_image": {"batched": 0.0021, "one_by_one": 0.0153},
        "cases": {"blur2": {"spec": "blur:2", **{name: {"psnr": 20.5, "ssim": 0.55, "stlpips": 0.153, "fd-vgg": 90.1}
                                                  for name in ("degraded", "tokenizer", "restorer f=0",
                                                               "restorer f=0.5", "restorer f=1")}}}},
}


@pytest.fixture
def page(tmp_path):
    """A page from a results folder with every result but the CIFAR-10 shoot-out, train_speed failed and
    sampling_speed from a --quick run."""
    trained = ["--tokenizer", "runs/tok", "--prior", "runs/prior"]
    for name, result in RESULTS.items():
        command = ["python", f"benchmarks/{name}.py"] + (trained if name in ("hair_colour", "inpaint_candidates",
                                                                            "tokenizer_eval") else [])
        if name in ("inpaint_maskgit_vs_ar", "quality_time"):
            command += ["--tokenizer", "runs/tok", "--ar", "runs/prior", "--maskgit", "runs/maskgit"]
        if name == "restoration_compare":
            command += ["--tokenizer", "runs/tok", "--restorer", "runs/restorer"]
        record = {"benchmark": name, "command": command + ["--json-out", str(tmp_path / f"{name}.json")],
                  "quick": name == "sampling_speed", "machine": MACHINE, "seconds": 12.0, "result": result}
        (tmp_path / f"{name}.json").write_text(json.dumps(record))
    (tmp_path / "train_speed.json").write_text(json.dumps({
        "benchmark": "train_speed", "command": ["python", "benchmarks/train_speed.py"], "quick": False,
        "machine": MACHINE, "seconds": 3.0,
        "failed": {"returncode": 1, "error": "exit status 1", "stderr": ["Traceback", "ValueError: boom"]}}))
    text = report.render(report.load_results(tmp_path), tmp_path)
    assert max(len(line) for line in text.splitlines() if not line.startswith("|")) <= 120
    return " ".join(text.split())  # prose is wrapped at 118 columns: compare it unwrapped


def test_every_table_and_machine_line(page):
    for header in ("| dim | vqstack `vq` |", "| case | tokens | seconds |", "| entry | s/step | × reference |",
                   "| variant | PSNR (dB) |", "| samples | followed (mean over colours) |", "| hair colour |",
                   "| metric | value |", "| candidates | ST-LPIPS (VGG) to the original |",
                   "| batch 8 | 8 | 5.98 | 4.77 | 1.25 | 4.89 | 1.02 |",
                   "| maskgit | 0.15 | 12.5 | 80 | 0.5 |", "maskgit `runs/maskgit`",
                   "| blur2 | restorer f=0.5 | 20.5 | 0.55 | 0.153 | 90.1 |",
                   "restorer `runs/restorer`; restoring takes 2.1 ms per image batched and 15.3 ms one by one",
                   "| maskgit | 8 passes | 215 | 5.9 | 0.012 | 0.011 |",
                   "batch 1: maskgit is faster at FD-VGG ≤ 221 (ar 0.031 s/image at T 1, maskgit 0.012 s/image at 8 passes)",
                   "× floor: batch 1: 1.5× unguided, 1.6× CFG (target ≤ 1.3); batch 8: 1.9× unguided, 1.7× CFG"):
        assert header in page, header
    assert "| 256 | 693 ms | 707 ms | 5092 ms | 5511 ms | 0.136 / 0.139 (≤ 0.6) | 349 / 221 MB vs 6526 MB |" in page
    assert "| `vqpytorch` | 1 | 1.00 |" in page and "| green | 66 % |" not in page
    assert "| green | 0.66 → 0.01 |" in page
    assert "| `small` | 351 | 12.1 | 20.5 | 0.6 | 0.2 | 0.95 | 0.93 | green 0.71 | hair_worst_colour |" in page
    assert "| `taming` | 254 | 8.2 | 18 | 0.5 | 0.4 | 0.1 | – | – | anchor |" in page
    line = ("Machine: Test CPU 9000, 2 logical cores, 2 torch threads, no GPU, load average 0.50 at the start; "
            "matmul float32 381 GFLOPS (2048² on cpu). python 3.11.7, torch 2.14.1, transformers 5.24.0, "
            "accelerate 1.15.0, torchmetrics 1.9.0, vqstack 0.1.0 (commit abc1234, with uncommitted changes). "
            "2026-11-28 10:00:00 UTC, full run, 12 s. Reference: vector-quantize-pytorch 1.32.0 `VectorQuantize`")
    assert line in page
    for reference in ("Reference: vector-quantize-pytorch `VectorQuantize` with rotation_trick=False, entry "
                      "`vqpytorch`", "Reference: real faces through the same check",
                      "Reference: the floor for × floor, the no-cache loop", "Reference: 1 candidate",
                      "Reference: the `baseline` variant"):
        assert reference in page, reference
    # the --json-out path is how run_all collects the result, not part of the command to type
    assert "`python benchmarks/quantizer_speed.py`" in page and "--json-out" not in page


def test_missing_failed_and_quick(page):
    assert "Not measured yet: `python benchmarks/run_all.py --only quantizer_shootout_cifar10` produces it." in page
    assert "**failed:** `python benchmarks/train_speed.py` (exit status 1) on 2026-11-28 10:00:00 UTC" in page
    assert "ValueError: boom" in page
    assert "**--quick smoke test: reduced sizes, not benchmark numbers**" in page
    assert page.count("full run") == 11  # all but the quick and the failed results
    assert "> **Smoke test.**" in page  # at the top, since one result is quick


def test_every_benchmark_has_a_section():
    args = argparse.Namespace(quick=False, device="cpu", tokenizer=Path("t"), prior=Path("p"), maskgit=Path("m"),
                              restorer=Path("r"))
    names = {name for section in report.SECTIONS for name, _ in section.parts}
    assert {bench.name for bench in run_all.benchmarks(args)} == names
    quick = run_all.benchmarks(argparse.Namespace(quick=True, device="cpu", tokenizer=None, prior=None))
    assert {b.name for b in quick if b.skip} == {"quantizer_shootout_cifar10", "hair_colour", "inpaint_candidates",
                                                  "tokenizer_eval", "quality_time", "inpaint_maskgit_vs_ar",
                                                  "restoration_compare"}


def test_quick_page_names_the_quick_command(tmp_path):
    page = " ".join(report.render({}, tmp_path, quick=True).split())
    assert "Not measured yet: `python benchmarks/run_all.py --quick --only sampling_speed` produces it." in page
    # the one benchmark a quick run skips even with trained artifacts is not offered as a --quick command
    quick = run_all.benchmarks(argparse.Namespace(quick=True, device="cpu", tokenizer=Path("t"), prior=Path("p"),
                                                  maskgit=Path("m"), restorer=Path("r")))
    assert [b.name for b in quick if b.skip] == [name for s in report.SECTIONS for name in s.not_quick]
    assert "Not part of a --quick run: `python benchmarks/run_all.py --only quantizer_shootout_cifar10`" in page


def test_run_records_the_result_or_the_failure(tmp_path):
    """Tiny stand-in scripts (no benchmark): one prints JSON after a log line, one fails."""
    ok = run_all.Benchmark("ok", "ok", ["-c", "import json; print('log'); print(json.dumps({'x': 1}))"], None)
    bad = run_all.Benchmark("bad", "bad", ["-c", "import sys; sys.exit('boom')"], "--json-out")
    assert run_all.run(ok, tmp_path, MACHINE, quick=True)
    assert not run_all.run(bad, tmp_path, MACHINE, quick=False)
    good, failed = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("ok", "bad"))
    assert good["result"] == {"x": 1} and good["quick"] and good["machine"] == MACHINE
    assert good["command"][0] == "python" and good["benchmark"] == "ok"
    assert failed["failed"]["returncode"] == 1 and failed["failed"]["stderr"] == ["boom"]
    assert "result" not in failed and not list(tmp_path.glob(".*"))  # no staging file left behind


def test_json_from_stdout_skips_log_lines():
    assert run_all.json_from_stdout('loading...\n{"a": 1}\n{\n "b": {\n  "c": 2\n }\n}\n') == {"b": {"c": 2}}
    with pytest.raises(ValueError):
        run_all.json_from_stdout("no json here\n")


def test_machine_measures_matmul_throughput():
    machine = run_all.describe_machine("cpu", size=256)
    assert machine["matmul_gflops"]["float32"] > 0
    assert machine["versions"]["torch"] and machine["logical_cores"] >= 1
    assert machine["date"].endswith("+00:00")
