"""SimVQ meets vqstack's quantizer contract, trains only W, keeps its codes in use, and lives in a Tokenizer."""
import torch

import vqstack
from vqstack.api import check_component

TINY_NET = {"ch": 16, "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [], "resolution": 16}


def train_usage(name: str, steps: int = 60, scale: float = 4.0) -> float:
    """Train quantizer ``name`` alone on fixed random features ``scale`` times wider than its N(0, 1) codes; return
    the fraction of codes that held-out features of that scale use."""
    torch.manual_seed(0)
    q = vqstack.build("quantizer", name, dim=8, codebook_size=256)
    optimizer = torch.optim.Adam(q.parameters(), lr=1e-2)
    data = torch.Generator().manual_seed(1)
    for _ in range(steps):
        loss = q(scale * torch.randn(16, 8, 8, 8, generator=data)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    q.eval()
    with torch.no_grad():
        return float(q(scale * torch.randn(64, 8, 8, 8, generator=data)).metrics["usage"])


def test_simvq_is_registered_and_conforms():
    assert "simvq" in vqstack.components("quantizer")
    check_component("quantizer", "simvq")


def test_simvq_builds_from_dim_alone_with_its_defaults():
    q = vqstack.build("quantizer", "simvq", dim=4)
    assert (q.dim, q.codebook_size, q.commitment_weight) == (4, 1024, 0.25)


def test_simvq_trains_w_and_never_the_codebook():
    q = vqstack.build("quantizer", "simvq", dim=8, codebook_size=32)
    assert [name for name, _ in q.named_parameters()] == ["project.weight"]  # W is the only parameter
    frozen, w = q.codebook.clone(), q.project.weight.detach().clone()
    optimizer = torch.optim.SGD(q.parameters(), lr=0.1)
    for _ in range(3):
        out = q(torch.randn(2, 8, 4, 4))
        optimizer.zero_grad()
        out.loss.backward()
        assert q.project.weight.grad.abs().sum() > 0, "the codebook term must reach W"
        optimizer.step()
    assert torch.equal(q.codebook, frozen)
    assert not torch.equal(q.project.weight, w)


def test_simvq_commitment_weight_scales_only_the_commitment_term():
    z = torch.randn(2, 8, 4, 4)
    losses = {}
    for beta in (0.0, 1.0):
        q = vqstack.build("quantizer", "simvq", dim=8, codebook_size=32, commitment_weight=beta)
        losses[beta] = q(z).loss
    # ‖sg(z) − q‖² and ‖z − sg(q)‖² have the same value: β = 1 doubles the loss, β = 0 leaves the codebook term
    torch.testing.assert_close(losses[1.0], 2 * losses[0.0])


def test_simvq_keeps_more_codes_in_use_than_vq():
    """vq moves only the codes it picks, so codes inside the data's range stay dead; SimVQ's W scales all of them."""
    vq, simvq = train_usage("vq"), train_usage("simvq")
    assert simvq > vq + 0.1, f"usage after training: simvq {simvq:.3f}, vq {vq:.3f}"


def test_simvq_tokenizer_round_trips_save_pretrained(tmp_path):
    torch.manual_seed(0)
    tok = vqstack.Tokenizer.from_config({
        "encoder": {"name": "conv", "kwargs": {**TINY_NET, "out_channels": 8}},
        "quantizer": {"name": "simvq", "kwargs": {"dim": 8, "codebook_size": 32, "commitment_weight": 0.5}},
        "decoder": {"name": "conv", "kwargs": {**TINY_NET, "in_channels": 8}}}).eval()
    with torch.no_grad():  # a changed W must survive the round trip, not only the initial identity
        tok.quantizer.project.weight.mul_(1.5)
    tok.save_pretrained(tmp_path)
    loaded = vqstack.Tokenizer.from_pretrained(tmp_path).eval()
    assert loaded.config["quantizer"] == {"name": "simvq", "kwargs": {"dim": 8, "codebook_size": 32,
                                                                      "commitment_weight": 0.5}}
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        tokens = tok.encode(images)
        assert torch.equal(loaded.encode(images), tokens)
        torch.testing.assert_close(loaded.decode(tokens), tok.decode(tokens))
