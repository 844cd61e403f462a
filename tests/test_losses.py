"""Reconstruction and adversarial losses: known values, VQGAN's adaptive weight (also across 2 gloo processes),
and the LeCAM regularizer's EMA state."""
import json
import math
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from vqstack.autoencoders import Decoder
from vqstack.losses import LeCAM, adaptive_weight, discriminator_loss, generator_loss, reconstruction_loss


def softplus(v):
    return math.log1p(math.exp(v))


# --- reconstruction ---------------------------------------------------------------------------------------


def test_reconstruction_losses_by_name():
    recon, target = torch.tensor([[1.0, -1.0], [0.5, 0.0]]), torch.zeros(2, 2)
    assert reconstruction_loss(recon, target, "l1").item() == pytest.approx(2.5 / 4)
    assert reconstruction_loss(recon, target, "l2").item() == pytest.approx(2.25 / 4)
    assert reconstruction_loss(recon, target, "l1", reduction="none").shape == (2, 2)
    with pytest.raises(ValueError, match="Unknown reconstruction loss 'l3'; choose one of l1, l2"):
        reconstruction_loss(recon, target, "l3")
    with pytest.raises(ValueError, match="same shape"):
        reconstruction_loss(recon, target[:1], "l1")


# --- GAN losses on known logits ---------------------------------------------------------------------------

REAL = torch.tensor([2.0, 0.5, -1.0])
FAKE = torch.tensor([-2.0, 0.0, 1.0])


def test_hinge_losses():
    # relu(1 - real) = [0, .5, 2], relu(1 + fake) = [0, 1, 2]
    assert discriminator_loss(REAL, FAKE, "hinge").item() == pytest.approx(0.5 * (2.5 / 3 + 3 / 3))
    assert generator_loss(FAKE, "hinge").item() == pytest.approx(1 / 3)  # -mean(fake)


def test_non_saturating_losses():
    d = 0.5 * (sum(softplus(-r) for r in REAL.tolist()) / 3 + sum(softplus(f) for f in FAKE.tolist()) / 3)
    g = sum(softplus(-f) for f in FAKE.tolist()) / 3
    assert discriminator_loss(REAL, FAKE, "non_saturating").item() == pytest.approx(d, rel=1e-6)
    assert generator_loss(FAKE, "non_saturating").item() == pytest.approx(g, rel=1e-6)
    assert generator_loss(FAKE, "non-saturating").item() == pytest.approx(g, rel=1e-6)  # LlamaGen's spelling


def test_gan_losses_work_on_patch_logits_and_reject_unknown_names():
    logits = torch.randn(2, 1, 6, 6, dtype=torch.bfloat16)
    assert discriminator_loss(logits, -logits).dtype == torch.float32  # computed in fp32 under bf16 autocast
    with pytest.raises(ValueError, match="Unknown generator loss 'wgan'; choose one of hinge, non_saturating"):
        generator_loss(logits, "wgan")
    with pytest.raises(ValueError, match="Unknown discriminator loss"):
        discriminator_loss(logits, logits, "lsgan")


# --- adaptive weight ----------------------------------------------------------------------------------------


def toy_losses(a, c, w):
    """rec = <w, a> has gradient a; gen = c/2 ||w||^2 has gradient c w."""
    return (w * a).sum(), 0.5 * c * (w ** 2).sum()


def test_adaptive_weight_equals_the_formula():
    w = torch.tensor([1.0, -2.0, 0.5], requires_grad=True)
    a, c = torch.tensor([3.0, 0.0, 4.0]), 0.1
    rec, gen = toy_losses(a, c, w)
    lam = adaptive_weight(rec, gen, w)
    expected = 5.0 / (c * math.sqrt(1 + 4 + 0.25) + 1e-4)
    assert lam.item() == pytest.approx(expected, rel=1e-6)
    assert not lam.requires_grad
    (rec + lam * gen).backward()  # the graph is kept for the real backward pass
    assert w.grad is not None


def test_adaptive_weight_is_clamped():
    w = torch.ones(3, requires_grad=True)
    rec, _ = toy_losses(torch.ones(3), 0.0, w)
    gen = 0.0 * w.sum()  # no adversarial gradient: the ratio would be ||a|| / delta
    assert adaptive_weight(rec, gen, w, max_weight=100.0).item() == 100.0


def test_adaptive_weight_explains_a_missing_dependency():
    w = torch.ones(3, requires_grad=True)
    rec, _ = toy_losses(torch.ones(3), 0.0, w)
    unrelated = torch.ones((), requires_grad=True) * 2
    with pytest.raises(RuntimeError, match="depend on last_layer"):
        adaptive_weight(rec, unrelated, w)


def test_adaptive_weight_on_a_decoder():
    dec = Decoder(**Decoder.example_kwargs())
    recon = dec(torch.randn(2, dec.in_channels, 4, 4))
    rec = (recon - torch.zeros_like(recon)).abs().mean()
    gen = -recon.mean()  # stands in for -D(recon)
    lam = adaptive_weight(rec, gen, dec.last_layer)
    assert lam.dim() == 0 and 0 < lam.item() < 1e4


def _distributed_worker(rank, world_size, port, out_dir):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        torch.manual_seed(0)
        w = torch.randn(4, requires_grad=True)  # same "last layer" on every rank
        torch.manual_seed(100 + rank)  # different data on every rank
        a, c = torch.randn(4), 0.5 + torch.rand(()).item()
        rec, gen = toy_losses(a, c, w)
        lam = adaptive_weight(rec, gen, w)
        lecam = LeCAM(decay=0.9)
        lecam(torch.randn(8) + rank, torch.randn(8) - rank)
        result = {"lambda": lam.item(), "rec_grad": a.tolist(), "gen_grad": (c * w).detach().tolist(),
                  "ema_real": lecam.ema_real.item(), "ema_fake": lecam.ema_fake.item()}
        (out_dir / f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_adaptive_weight_and_lecam_are_identical_across_processes(tmp_path):
    """Each of 2 gloo processes has different data; both must use the same weight (taming's would differ)."""
    mp.spawn(_distributed_worker, args=(2, free_port(), tmp_path), nprocs=2, join=True)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2))
    assert r0["lambda"] == r1["lambda"]
    # the norms of the gradients DDP applies: the mean over ranks of each gradient, then its norm
    rec, gen = (torch.tensor([r0[k], r1[k]]) for k in ("rec_grad", "gen_grad"))
    assert r0["lambda"] == pytest.approx((rec.mean(0).norm() / (gen.mean(0).norm() + 1e-4)).item(), rel=1e-5)
    mean_of_norms = rec.norm(dim=1).mean() / (gen.norm(dim=1).mean() + 1e-4)
    assert r0["lambda"] != pytest.approx(mean_of_norms.item(), rel=1e-2)  # the ranks' gradients point apart
    local = [(r.norm() / (g.norm() + 1e-4)).item() for r, g in zip(rec, gen)]
    assert local[0] != pytest.approx(local[1], rel=1e-3)  # the data did differ
    assert (r0["ema_real"], r0["ema_fake"]) == (r1["ema_real"], r1["ema_fake"])


# --- LeCAM ------------------------------------------------------------------------------------------------


def test_lecam_ema_and_value():
    lecam = LeCAM(decay=0.9)
    assert not lecam.initialized
    real = torch.tensor([1.0, -1.0, 3.0], requires_grad=True)  # mean 1
    fake = torch.tensor([0.5, -0.5], requires_grad=True)  # mean 0
    reg = lecam(real, fake)  # first update copies the means: ema_real = 1, ema_fake = 0
    assert (lecam.ema_real.item(), lecam.ema_fake.item()) == (1.0, 0.0)
    # relu(real - 0)^2 = [1, 0, 9] -> 10/3;  relu(1 - fake)^2 = [.25, 2.25] -> 1.25
    assert reg.item() == pytest.approx(10 / 3 + 1.25)
    reg.backward()
    assert real.grad.abs().sum() > 0 and fake.grad.abs().sum() > 0
    lecam(torch.full((4,), 3.0), torch.full((4,), -2.0))
    assert lecam.ema_real.item() == pytest.approx(0.9 * 1 + 0.1 * 3)
    assert lecam.ema_fake.item() == pytest.approx(0.9 * 0 + 0.1 * -2)


def test_lecam_state_dict_round_trip_and_eval_freezes_it():
    lecam = LeCAM(decay=0.5)
    lecam(torch.tensor([2.0]), torch.tensor([-2.0]))
    lecam(torch.tensor([4.0]), torch.tensor([0.0]))
    state = lecam.state_dict()
    assert set(state) == {"ema_real", "ema_fake", "initialized"}
    restored = LeCAM(decay=0.5)
    restored.load_state_dict(state)
    assert (restored.ema_real.item(), restored.ema_fake.item(), bool(restored.initialized)) == (3.0, -1.0, True)
    restored.eval()
    restored(torch.tensor([100.0]), torch.tensor([100.0]))  # eval: computes, does not update
    assert restored.ema_real.item() == 3.0
    with pytest.raises(ValueError, match="decay"):
        LeCAM(decay=1.0)
