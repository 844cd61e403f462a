"""Every process holds the same codebook after every step: 2 CPU processes on gloo, different data per rank."""
import copy
import os
import socket
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

WORLD = 2
STEPS = 4

pytestmark = pytest.mark.skipif(not dist.is_available() or sys.platform == "win32",
                                reason="needs torch.distributed with gloo")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_same_on_every_rank(tensor: torch.Tensor, what: str) -> None:
    copies = [torch.empty_like(tensor) for _ in range(WORLD)]
    dist.all_gather(copies, tensor.detach().contiguous())
    for rank, copy in enumerate(copies[1:], start=1):
        assert torch.equal(copy, copies[0]), f"{what}: rank {rank} differs from rank 0"


def batch(rank: int, step: int) -> torch.Tensor:
    """Different data per rank and step (and a different scale per rank, so codebooks would diverge)."""
    generator = torch.Generator().manual_seed(1000 * rank + step)
    return (1 + rank) * torch.randn(4, 8, 4, 4, generator=generator) + rank


def worker(rank: int, port: int) -> None:
    from torch.nn.parallel import DistributedDataParallel

    from vqstack.quantizers import EMAVectorQuantizer, VectorQuantizer

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        # different seeds: construction and every random choice inside differ per rank unless synchronised
        torch.manual_seed(rank)
        ema = EMAVectorQuantizer(dim=8, codebook_size=32, kmeans_init=True, kmeans_iters=3,
                                 dead_code_threshold=1.0, decay=0.8)
        restarted = 0.0
        for step in range(STEPS):
            out = ema(batch(rank, step))
            restarted += out.metrics["restarted_codes"]
            for name in ("codebook", "embed_sum", "cluster_size"):
                assert_same_on_every_rank(getattr(ema, name), f"ema {name} after step {step}")
        assert restarted > 0, "the test must exercise dead-code restarts"

        vq = VectorQuantizer(dim=8, codebook_size=32, kmeans_init=True, kmeans_iters=3, dead_code_threshold=2.0,
                             usage_decay=0.5)
        model = DistributedDataParallel(vq)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
        restarted = 0.0
        for step in range(STEPS):
            out = model(batch(rank, step))
            (out.loss + out.quantized.square().mean()).backward()
            optimizer.step()
            optimizer.zero_grad()
            restarted += out.metrics["restarted_codes"]
            assert_same_on_every_rank(vq.codebook, f"vq codebook after step {step}")
            assert_same_on_every_rank(vq.cluster_size, f"vq cluster_size after step {step}")
        assert restarted > 0, "the test must exercise dead-code restarts"
    finally:
        dist.destroy_process_group()
    # Skip interpreter teardown: after a CPU optimizer step, torch's gloo backend intermittently aborts the process
    # at exit ("terminate called without an active exception") although every check above passed. A failed check
    # raises before this line and reaches mp.spawn as usual.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def test_codebooks_stay_identical_across_processes():
    mp.spawn(worker, args=(free_port(),), nprocs=WORLD, join=True)


def lfq_rows(rank: int) -> torch.Tensor:
    return torch.randn(6, 8, generator=torch.Generator().manual_seed(rank)) * (1 + rank)


def lfq_worker(rank: int, port: int) -> None:
    from vqstack.quantizers import LFQ

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        lfq = LFQ(bits=8, temperature=1.0)
        x = lfq_rows(rank).requires_grad_()
        _, codebook = lfq.entropy_terms(x)
        codebook.backward()
        dist.destroy_process_group()
        # one process on the rows of every rank: the same entropy, and (times WORLD, undone by DDP's averaging
        # of parameter gradients) the same gradient for this rank's rows
        rows = torch.cat([lfq_rows(r) for r in range(WORLD)]).requires_grad_()
        _, whole = lfq.entropy_terms(rows)
        whole.backward()
        torch.testing.assert_close(codebook.detach(), whole.detach())
        torch.testing.assert_close(x.grad, WORLD * rows.grad[6 * rank:6 * (rank + 1)])
        _, local = lfq.entropy_terms(lfq_rows(rank))
        assert not torch.allclose(local, whole), "the ranks' own batches must give a different entropy"
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def test_lfq_codebook_entropy_is_that_of_the_whole_batch():
    mp.spawn(lfq_worker, args=(free_port(),), nprocs=WORLD, join=True)


def nonfinite_worker(rank: int, port: int) -> None:
    """One NaN on rank 1 only: both ranks skip that batch, and end as a run that never saw it."""
    from vqstack.quantizers import EMAVectorQuantizer, VectorQuantizer

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        maintained = {"dim": 8, "codebook_size": 32, "kmeans_init": True, "kmeans_iters": 3,
                      "dead_code_threshold": 1.0}
        for cls, decay in ((EMAVectorQuantizer, {"decay": 0.8}), (VectorQuantizer, {"usage_decay": 0.5})):
            torch.manual_seed(rank)
            q = cls(**maintained, **decay)
            reference = copy.deepcopy(q)
            bad = batch(rank, 99)
            if rank == 1:
                bad[0, 2, 1, 3] = float("nan")
            restarted = 0.0
            for step in range(STEPS):
                if step == 2:
                    out = q(bad)
                    assert float(out.metrics["restarted_codes"]) == 0.0, "a bad batch restarts nothing"
                torch.manual_seed(step)  # the same restart candidates for q and reference
                restarted += q(batch(rank, step)).metrics["restarted_codes"]
                torch.manual_seed(step)
                reference(batch(rank, step))
            assert restarted > 0, "the test must exercise dead-code restarts"
            expected = reference.state_dict()
            for name, value in q.state_dict().items():
                what = f"{cls.__name__} {name}"
                assert_same_on_every_rank(value, what)
                assert torch.equal(value, expected[name]), f"{what}: the bad batch left a trace"
                if value.is_floating_point():
                    assert torch.isfinite(value).all(), f"{what} is not finite"
    finally:
        dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def test_a_nan_on_one_rank_is_skipped_on_every_rank():
    mp.spawn(nonfinite_worker, args=(free_port(),), nprocs=WORLD, join=True)


def broadcast_worker(rank: int, port: int) -> None:
    """Dead-code restarts broadcast K x d candidates only in a forward that follows one which left a dead code."""
    from vqstack.quantizers import EMAVectorQuantizer

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    broadcast = dist.broadcast
    calls = []
    dist.broadcast = lambda tensor, *args, **kwargs: calls.append(tensor.shape) or broadcast(tensor, *args, **kwargs)
    try:
        torch.manual_seed(rank)
        q = EMAVectorQuantizer(dim=8, codebook_size=32, dead_code_threshold=0.3, decay=0.5)
        with torch.no_grad():
            q.codebook[16:] += 1000.0  # never nearest to anything: usage 1 -> 0.5 -> 0.25, dead after forward 2
            q.embed_sum.copy_(q.codebook)
        per_forward, restarted = [], []
        for step in range(3):
            calls.clear()
            out = q(batch(rank, step))
            per_forward.append(len(calls))
            restarted.append(float(out.metrics["restarted_codes"]))
        assert per_forward[0] >= 1, "the first forward syncs the state and checks for dead codes in full"
        assert per_forward[1:] == [0, 1], per_forward
        assert restarted == [0.0, 0.0, 16.0]
        assert_same_on_every_rank(q.codebook, "codebook after the restart")

        quiet = EMAVectorQuantizer(dim=8, codebook_size=32, dead_code_threshold=1e-3, decay=0.8)
        per_forward = []
        for step in range(STEPS):
            calls.clear()
            quiet(batch(rank, step))
            per_forward.append(len(calls))
        assert per_forward[1:] == [0] * (STEPS - 1), f"broadcasts while no code is dead: {per_forward}"
    finally:
        dist.broadcast = broadcast
        dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def test_restarts_broadcast_only_when_a_code_is_dead():
    mp.spawn(broadcast_worker, args=(free_port(),), nprocs=WORLD, join=True)
