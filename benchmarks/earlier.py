"""Hand measurements published before benchmarks/run_all.py existed, shown where run_all has no result yet.

Each is the table as it was measured, with its own machine line; a run of ``python benchmarks/run_all.py --only
NAME`` replaces it with a generated section."""

EARLIER = {
    "quantizer_speed": """Machine: development machine, x86_64 CPU, 2 threads, torch 2.14.1 (load average 2.3 during the run).

| dim | vqstack `vq` | vqstack `ema` | reference (learnable) | reference (EMA) | time ratio `vq` / `ema` (target) | memory: ours / reference | memory ratio (target) |
|---:|---:|---:|---:|---:|---:|---:|---:|
| 256 | 693 ms | 707 ms | 5092 ms | 5511 ms | 0.136 / 0.139 (≤ 0.6) | 349 / 221 MB vs 6526 MB | 0.053 / 0.034 (≤ 0.2) |
| 8 | 135 ms | 137 ms | 3712 ms | 3807 ms | 0.036 / 0.037 (≤ 0.25) | 51 / 37 MB vs 6182 MB | 0.008 / 0.006 (≤ 0.2) |""",
    "train_speed": """Machine: development machine, 2 CPU threads, fp32, shared with a prior training run (load average 2.5–3.1 on 2
cores, so about half the CPU was ours).

| phase | images/s | encoder | decoder | discriminator | perceptual (ST-LPIPS VGG) |
|---|---:|---:|---:|---:|---:|
| before `--disc-start` | 0.58 | 1 | 1 | 0 | 1 |
| with the discriminator | 0.56 | 1 | 1 | 3 (1 in the generator step, frozen; real + fake in its own step) | 1 |""",
    "sampling_speed": """fp32, 2 CPU threads on the development machine, quiet (CPU pressure 0 before and after); floors measured on the
same machine: matmul 381 GFLOPS, memory 24.3 GB/s.

| case | seconds | tokens/s | images/s | × floor |
|---|---:|---:|---:|---:|
| batch 1 | 1.56 | 165 | 0.64 | 1.28 |
| batch 1, CFG | 1.67 | 153 | 0.60 | 1.33 |
| batch 8 | 2.89 (target ≲ 3) | 708 | 2.77 | 1.9 |
| batch 8, CFG | 4.75 | 432 | 1.69 | 2.5 |
| batch 64 | 10.3 | 1588 | 6.2 | 2.6 |
| batch 64, CFG | 16.7 | 980 | 3.8 | 2.4 |
| batch 8, DynamicCache / StaticCache | 3.42 / 3.46 | 599 / 593 | | |
| batch 8, no cache (re-runs the prefix) | 58.4 | 35 | | |

KV cache vs no cache at batch 8: 20.2× (target ≥ 10×). CFG cost: 1.64× at batch 8, 1.62× at batch 64 (target
≤ 2.2×).""",
    "hair_colour": """Small prior (3.5M parameters, the step-2,000 export of a 3,000-step run) over the 32-px tiny
tokenizer with restarts (4,000 steps, eval PSNR 21.3 dB), 32 samples per colour; trained and sampled on the 2-core
development machine (CPU, torch 2.14.1, 2026-11-27; no GPU was lent):

| samples | followed |
|---|---:|
| guidance 3 | 53 % |
| guidance 1 | 29 % |
| real faces, same check (reference) | 44 % |
| real faces through the tokenizer (reference) | 34 % |""",
}
