"""What only a GPU can show: bf16 autocast on CUDA, codebooks kept identical over NCCL, and CUDA memory.

Marked ``gpu``: skipped on a machine without CUDA (tests/conftest.py), run with ``pytest -m gpu`` on one with it.
The CPU suite covers the same code paths with CPU autocast and gloo."""
import json
import os
import socket
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from helpers.recipes import load_recipe, reset_accelerate, write_image_folder

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("images"), count=40)


def test_vqgan_recipe_trains_in_bf16_on_cuda(images, tmp_path):
    reset_accelerate()
    torch.cuda.reset_peak_memory_stats()
    result = load_recipe("vqgan_anime").main([
        "--preset", "tiny", "--data", str(images), "--output-dir", str(tmp_path), "--max-steps", "4",
        "--batch-size", "8", "--mixed-precision", "bf16", "--num-workers", "0", "--log-every", "1"])
    assert next(result["tokenizer"].parameters()).is_cuda
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == 4 and all(torch.isfinite(torch.tensor(losses))), losses
    assert records[-1]["skipped_steps"] == 0, "bf16 must not produce NaN/inf steps"
    # the tiny preset at batch 8: a few hundred MB; a leak or an fp32 copy per step would show here
    peak = torch.cuda.max_memory_allocated() / 2**20
    assert peak < 2048, f"peak CUDA memory {peak:.0f} MiB"


def test_quantizer_distances_stay_fp32_under_cuda_bf16_autocast():
    import vqstack

    q = vqstack.build("quantizer", "vq", dim=8, codebook_size=64).cuda().train()
    z = torch.randn(4, 8, 8, 8, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = q(z.bfloat16())
    assert q.codebook.dtype == torch.float32 and out.indices.dtype == torch.long
    exact = q.indices_to_codes(out.indices)
    assert torch.isfinite(out.loss) and exact.dtype == torch.float32


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def nccl_worker(rank: int, port: int, world: int) -> None:
    from vqstack.quantizers import EMAVectorQuantizer

    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        torch.manual_seed(rank)  # different construction per rank: only synchronisation makes them agree
        q = EMAVectorQuantizer(dim=8, codebook_size=32, kmeans_init=True, dead_code_threshold=1.0).cuda()
        for step in range(4):
            generator = torch.Generator("cuda").manual_seed(1000 * rank + step)
            q((1 + rank) * torch.randn(4, 8, 4, 4, device="cuda", generator=generator))
            copies = [torch.empty_like(q.codebook) for _ in range(world)]
            dist.all_gather(copies, q.codebook.contiguous())
            for other in copies[1:]:
                assert torch.equal(other, copies[0]), f"codebooks differ after step {step}"
    finally:
        dist.destroy_process_group()
    sys.stdout.flush()
    os._exit(0)


@pytest.mark.skipif(torch.cuda.device_count() < 2 or not dist.is_nccl_available(), reason="needs 2 GPUs and NCCL")
def test_ema_codebooks_stay_identical_over_nccl():
    mp.spawn(nccl_worker, args=(free_port(), 2), nprocs=2, join=True)
