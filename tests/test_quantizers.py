"""What users of the built-in quantizers rely on (vq, ema, fsq, lfq, residual)."""
import itertools
import math

import pytest
import torch
import torch.nn.functional as F

import vqstack
from vqstack.quantizers import (FSQ, LFQ, EMAVectorQuantizer, ResidualVQ, VectorQuantizer, nearest_codes,
                                to_maps, to_vectors)

BUILTINS = ["vq", "ema", "fsq", "lfq", "residual"]


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


def mse_after_fit(q, z):
    """One training forward (k-means init etc.), then the eval reconstruction error."""
    q.train()
    q(z)
    q.eval()
    with torch.no_grad():
        return F.mse_loss(q(z).quantized, z).item()


# --- registration and contract ----------------------------------------------------------------------------


def test_builtins_are_registered_by_the_quantizers_plugin():
    assert set(BUILTINS) <= set(vqstack.components("quantizer"))
    for name in BUILTINS:
        assert vqstack.registry("quantizer").owner(name) == "vqstack.quantizers"
        q = vqstack.build("quantizer", name, dim=8)
        assert q.dim == 8 and isinstance(q.codebook_size, int)


def test_default_sizes():
    assert VectorQuantizer(dim=8).codebook_size == EMAVectorQuantizer(dim=8).codebook_size == 1024
    assert ResidualVQ(dim=8).codebook_size == 1024
    assert FSQ().codebook_size == math.prod(FSQ().levels) and FSQ().dim == len(FSQ().levels)
    assert LFQ(dim=10).codebook_size == 2**10 and LFQ(dim=10).bits == 10
    assert LFQ(dim=256).bits == 14 and LFQ().dim == 14


# --- vq: loss, gradients, search --------------------------------------------------------------------------


def test_commitment_weight_multiplies_the_commitment_term():
    """β scales the gradient the loss sends to z; the codebook term reaches the codes with weight 1."""
    beta = 0.25
    q = VectorQuantizer(dim=8, codebook_size=16, commitment_weight=beta)
    z = torch.randn(2, 8, 4, 4, requires_grad=True)
    out = q(z)
    out.loss.backward()
    e = q.indices_to_codes(out.indices).detach()
    torch.testing.assert_close(out.loss, (1 + beta) * F.mse_loss(z, e))
    # loss = mean(‖sg(z) − e‖²) + β·mean(‖z − sg(e)‖²): per unit of error, z gets β, the codes get 1
    z_grad = to_vectors(z.grad).sum(0)
    torch.testing.assert_close(q.codebook.grad.sum(0), -z_grad / beta)
    assert z.grad.norm() < 0.5 * q.codebook.grad.norm()


def test_straight_through_gradient_reaches_z():
    for q in (VectorQuantizer(dim=8, codebook_size=16), EMAVectorQuantizer(dim=8, codebook_size=16),
              LFQ(dim=8), ResidualVQ(dim=8, codebook_size=16, num_quantizers=3)):
        z = torch.randn(2, 8, 3, 5, requires_grad=True)
        q(z).quantized.sum().backward()
        # the gradient of quantized passes to z unchanged (residual: once, not once per level)
        torch.testing.assert_close(z.grad, torch.ones_like(z), msg=type(q).__name__)


@pytest.mark.parametrize("cls", [VectorQuantizer, EMAVectorQuantizer])
def test_nearest_code_is_truly_nearest(cls):
    q = cls(dim=6, codebook_size=50).eval()
    z = torch.randn(3, 6, 5, 7)
    out = q(z)
    brute = torch.cdist(to_vectors(z), q.codebook).argmin(1)
    assert torch.equal(out.indices.reshape(-1), brute)
    torch.testing.assert_close(out.quantized, q.indices_to_codes(out.indices))


def test_chunked_search_equals_unchunked():
    x, codes = torch.randn(1000, 16), torch.randn(300, 16)
    whole = nearest_codes(x, codes, chunk_size=1000)
    for chunk in (3, 7, 128, 999):
        assert torch.equal(nearest_codes(x, codes, chunk_size=chunk), whole)
    xn, cn = F.normalize(x, dim=-1), F.normalize(codes, dim=-1)
    assert torch.equal(nearest_codes(xn, cn, cosine=True, chunk_size=7), (xn @ cn.T).argmax(1))


def test_l2_normalize_uses_unit_codes_and_cosine_similarity():
    q = VectorQuantizer(dim=8, codebook_size=32, l2_normalize=True).eval()
    z = 3 * torch.randn(2, 8, 4, 4)
    out = q(z)
    x, codes = F.normalize(to_vectors(z), dim=-1), F.normalize(q.codebook, dim=-1)
    assert torch.equal(out.indices.reshape(-1), (x @ codes.T).argmax(1))
    torch.testing.assert_close(to_vectors(out.quantized).norm(dim=-1), torch.ones(32))
    torch.testing.assert_close(out.quantized, q.indices_to_codes(out.indices))


def test_codebook_dim_projects_to_low_dimensional_codes():
    q = VectorQuantizer(dim=16, codebook_size=32, codebook_dim=4, l2_normalize=True)
    assert q.codebook.shape == (32, 4)
    z = torch.randn(2, 16, 4, 4, requires_grad=True)
    out = q(z)
    assert out.quantized.shape == z.shape
    (out.quantized.square().mean() + out.loss).backward()
    assert q.project_in.weight.grad.abs().sum() > 0 and q.project_out.weight.grad.abs().sum() > 0
    q.eval()
    with torch.no_grad():
        out = q(z)
    torch.testing.assert_close(out.quantized, q.indices_to_codes(out.indices))


# --- codebook maintenance ---------------------------------------------------------------------------------


def clustered(n_clusters=16, dim=8, per_cluster=64, noise=0.05):
    centers = 3 * torch.randn(n_clusters, dim)
    x = centers.repeat_interleave(per_cluster, 0) + noise * torch.randn(n_clusters * per_cluster, dim)
    return to_maps(x[torch.randperm(len(x))], (len(x) // 16, dim, 4, 4))


@pytest.mark.parametrize("cls", [VectorQuantizer, EMAVectorQuantizer])
def test_kmeans_init_beats_random_init(cls):
    z = clustered()
    random_init = mse_after_fit(cls(dim=8, codebook_size=16), z)
    kmeans_init = mse_after_fit(cls(dim=8, codebook_size=16, kmeans_init=True), z)
    assert kmeans_init < 0.25 * random_init


def test_kmeans_init_happens_once_and_survives_a_state_dict_round_trip():
    q = VectorQuantizer(dim=8, codebook_size=16, kmeans_init=True).eval()
    before = q.codebook.detach().clone()
    q(clustered())
    assert torch.equal(q.codebook, before), "k-means must not run in eval mode"
    q.train()
    q(clustered())
    after = q.codebook.detach().clone()
    twin = VectorQuantizer(dim=8, codebook_size=16, kmeans_init=True)
    twin.load_state_dict(q.state_dict())
    twin.train()
    with torch.no_grad():
        twin(clustered())
    torch.testing.assert_close(twin.codebook, after)


def test_ema_codes_move_to_the_mean_of_their_vectors():
    q = EMAVectorQuantizer(dim=4, codebook_size=8, decay=0.0)
    z = torch.randn(4, 4, 8, 8)
    codebook = q.codebook.clone()
    indices = q(z).indices.reshape(-1)
    x = to_vectors(z)
    for k in indices.unique():
        torch.testing.assert_close(q.codebook[k], x[indices == k].mean(0), rtol=1e-3, atol=1e-4)
    # with decay, codes move part of the way
    q = EMAVectorQuantizer(dim=4, codebook_size=8, decay=0.9)
    q.codebook.copy_(codebook)
    q.embed_sum.copy_(codebook)
    q(z)
    for k in indices.unique():
        mean = x[indices == k].mean(0)
        assert (q.codebook[k] - mean).norm() < (codebook[k] - mean).norm()


def test_ema_does_not_update_in_eval_mode():
    q = EMAVectorQuantizer(dim=4, codebook_size=8, dead_code_threshold=5.0).eval()
    state = {k: v.clone() for k, v in q.state_dict().items()}
    q(torch.randn(2, 4, 8, 8))
    for key, value in q.state_dict().items():
        assert torch.equal(value, state[key]), key


@pytest.mark.parametrize("cls,decay", [(VectorQuantizer, "usage_decay"), (EMAVectorQuantizer, "decay")])
def test_dead_codes_are_restarted_on_batch_vectors(cls, decay):
    q = cls(dim=4, codebook_size=16, dead_code_threshold=0.3, **{decay: 0.5})
    with torch.no_grad():
        q.codebook[8:] += 1000.0  # never nearest to anything
        if cls is EMAVectorQuantizer:
            q.embed_sum.copy_(q.codebook)
    far = q.codebook[8:].clone()
    restarted = []
    for _ in range(3):  # usage 1 -> 0.5 -> 0.25: dead at the third step
        z = torch.randn(2, 4, 4, 4)
        out = q(z)
        restarted.append(out.metrics["restarted_codes"])
    assert restarted == [0.0, 0.0, 8.0]
    assert not torch.isclose(q.codebook[8:], far).any() and q.codebook[8:].abs().max() < 10
    assert out.metrics["usage"] > 0.5, "restarted codes are used at once"
    if cls is VectorQuantizer:  # (EMA codes have moved on by one update)
        x = to_vectors(z)
        for code in q.codebook[8:]:
            assert (x - code).norm(dim=1).min() < 1e-6, "a restarted code is a current-batch vector"


@pytest.mark.parametrize("cls,decay", [(VectorQuantizer, "usage_decay"), (EMAVectorQuantizer, "decay")])
def test_a_loaded_state_with_dead_codes_is_restarted_at_the_next_forward(cls, decay):
    """A forward that leaves no dead code lets the next one skip the restart (and its broadcast); loading a state
    in between voids that decision, or the loaded dead codes would wait one forward."""
    q = cls(dim=4, codebook_size=16, dead_code_threshold=0.3, **{decay: 0.9})
    q(torch.randn(2, 4, 4, 4))  # every usage stays >= 0.9: no code dead
    state = {key: value.clone() for key, value in q.state_dict().items()}
    state["cluster_size"][8:] = 0.0
    q.load_state_dict(state)
    assert q(torch.randn(2, 4, 4, 4)).metrics["restarted_codes"] == 8.0
    assert q(torch.randn(2, 4, 4, 4)).metrics["restarted_codes"] == 0.0


# --- FSQ and LFQ ------------------------------------------------------------------------------------------


def test_fsq_indices_and_codes_are_a_bijection():
    q = FSQ(levels=[3, 4, 5]).eval()
    assert q.codebook_size == 60 and q.dim == 3
    indices = torch.arange(60).view(1, 6, 10)
    codes = to_vectors(q.indices_to_codes(indices))
    assert codes.unique(dim=0).shape[0] == 60 and codes.abs().max() <= 1
    z = torch.randn(16, 3, 16, 16)
    out = q(z)
    assert set(out.indices.unique().tolist()) == set(range(60))
    torch.testing.assert_close(out.quantized, q.indices_to_codes(out.indices))
    assert out.loss.item() == 0.0


def test_fsq_and_lfq_project_when_dim_differs():
    for q in (FSQ(dim=12, levels=[8, 5, 5]), LFQ(dim=12, bits=5)):
        assert q.dim == 12 and q.project_in.out_features == q.project_out.in_features
        z = torch.randn(2, 12, 4, 4, requires_grad=True)
        out = q.eval()(z)
        out.quantized.sum().backward()
        assert z.grad.abs().sum() > 0
        torch.testing.assert_close(out.quantized, q.indices_to_codes(out.indices))


def test_fsq_and_lfq_do_not_take_codebook_size():
    for name in ("fsq", "lfq"):
        with pytest.raises(TypeError, match="codebook_size"):
            vqstack.build("quantizer", name, dim=8, codebook_size=256)


def test_lfq_index_code_round_trip():
    q = LFQ(dim=6, codebook_scale=0.5).eval()
    assert q.codebook_size == 64
    indices = torch.arange(64).view(1, 8, 8)
    codes = q.indices_to_codes(indices)
    assert set(codes.unique().tolist()) == {-0.5, 0.5}
    assert torch.equal(q(codes).indices, indices)
    torch.testing.assert_close(q(codes).quantized, codes)


def brute_force_entropies(x, scale, temperature):
    """Entropies of softmax_c(2·x·c/τ) over all 2^bits codes c in {±scale}^bits: the N x 2^bits table."""
    bits = x.shape[1]
    codes = torch.tensor(list(itertools.product([-scale, scale], repeat=bits)))
    probs = (2 * x @ codes.T / temperature).softmax(-1)
    per_sample = -(probs * probs.log()).sum(-1).mean()
    mean = probs.mean(0)
    return per_sample, -(mean * mean.log()).sum(), probs, codes


def test_lfq_entropy_terms_match_the_full_table():
    q = LFQ(dim=6, codebook_scale=1.5, temperature=1.0)  # 6 bits, one group of <= 8
    x = 0.5 * torch.randn(300, 6)
    per_sample, codebook = q.entropy_terms(x)
    want_sample, want_codebook, _, _ = brute_force_entropies(x, 1.5, 1.0)
    torch.testing.assert_close(per_sample, want_sample)
    torch.testing.assert_close(codebook, want_codebook)


def test_lfq_grouped_codebook_entropy_sums_group_marginals():
    q = LFQ(dim=6, temperature=1.0, entropy_group_bits=3)
    assert q.entropy_groups == [3, 3]
    x = 0.5 * torch.randn(300, 6) + torch.tensor([1.0, 0, 0, 1.0, 0, 0])
    _, codebook = q.entropy_terms(x)
    _, joint, probs, codes = brute_force_entropies(x, 1.0, 1.0)
    mean = probs.mean(0)
    want = 0.0
    for group in (slice(0, 3), slice(3, 6)):  # marginalise the full table onto each group's bits
        keys = ((codes[:, group] > 0).long() * torch.tensor([4, 2, 1])).sum(1)
        marginal = torch.zeros(8).index_add_(0, keys, mean)
        want = want - (marginal * marginal.log()).sum()
    torch.testing.assert_close(codebook, want)
    assert codebook >= joint - 1e-5  # the grouped estimate bounds the joint entropy from above


def test_lfq_entropy_penalty_is_in_the_training_loss():
    q = LFQ(dim=8, temperature=1.0)
    z = torch.randn(2, 8, 4, 4)
    train = q.train()(z)
    per_sample, codebook = q.entropy_terms(to_vectors(z))
    commit = 0.25 * F.mse_loss(to_vectors(z), to_vectors(train.quantized))
    torch.testing.assert_close(train.loss, commit + 0.1 * (per_sample - codebook))
    assert {"per_sample_entropy", "codebook_entropy"} <= set(train.metrics)
    torch.testing.assert_close(q.eval()(z).loss, commit)


# --- residual ---------------------------------------------------------------------------------------------


def test_residual_error_falls_with_more_levels():
    z = torch.randn(8, 8, 8, 8)
    errors = []
    for levels in (1, 2, 4):
        torch.manual_seed(0)
        q = ResidualVQ(dim=8, num_quantizers=levels, codebook_size=32, quantizer_kwargs={"kmeans_init": True})
        errors.append(mse_after_fit(q, z))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.7 * errors[0]


@pytest.mark.parametrize("base,kwargs", [("vq", {"codebook_size": 16}), ("ema", {"codebook_size": 16}),
                                         ("fsq", {"quantizer_kwargs": {"levels": [5, 5, 4]}}),
                                         ("lfq", {"quantizer_kwargs": {"bits": 6}})])
def test_residual_over_each_base(base, kwargs):
    q = ResidualVQ(dim=8, num_quantizers=3, quantizer=base, **kwargs)
    assert q.codebook_size == q.levels[0].codebook_size
    z = torch.randn(2, 8, 4, 4)
    out = q(z)
    assert out.indices.shape == (2, 4, 4, 3) and out.indices.max() < q.codebook_size
    assert "perplexity/level2" in out.metrics
    q.eval()
    out = q(z)
    torch.testing.assert_close(out.quantized, q.indices_to_codes(out.indices))
    residual, loss = z, 0.0
    for d, level in enumerate(q.levels):  # quantized = sum of level codes, each level on what the previous left
        level_out = level(residual)
        residual, loss = residual - level_out.quantized, loss + level_out.loss
        if d > 0:  # plus the commitment of z to the partial sum: z − Σ_{i≤d} e_i is what is left
            loss = loss + getattr(level, "commitment_weight", 0.0) * residual.square().mean()
    torch.testing.assert_close(out.quantized, z - residual)
    torch.testing.assert_close(out.loss, loss)


def test_residual_commitment_reaches_z_from_every_level():
    # RQ-VAE: the encoder commits to every partial sum, so d loss / d z = Σ_d 2β (z − Σ_{i≤d} e_i) / numel
    torch.manual_seed(0)
    q = ResidualVQ(dim=8, num_quantizers=3, codebook_size=16, quantizer_kwargs={"commitment_weight": 0.25})
    z = torch.randn(2, 8, 4, 4, requires_grad=True)
    out = q(z)
    out.loss.backward()
    partial, expected = torch.zeros_like(z), torch.zeros_like(z)
    for d in range(3):
        partial = partial + q.levels[d].indices_to_codes(out.indices[..., d])
        expected += 2 * 0.25 * (z.detach() - partial) / z.numel()
    torch.testing.assert_close(z.grad, expected)
    assert (z.grad - 2 * 0.25 * (z.detach() - q.levels[0].indices_to_codes(out.indices[..., 0])) / z.numel()
            ).abs().max() > 1e-4, "levels 1 and 2 must add to the gradient"


def test_residual_refuses_multi_codebook_levels():
    with pytest.raises(ValueError, match="single-codebook"):
        ResidualVQ(dim=8, quantizer="residual")
    q = ResidualVQ(dim=8, num_quantizers=1, codebook_size=16)
    q.levels[0] = ResidualVQ(dim=8, num_quantizers=2, codebook_size=16)  # e.g. a plugin's grouped quantizer
    with pytest.raises(ValueError, match="single-codebook"):
        q(torch.randn(1, 8, 2, 2))


# --- mixed precision --------------------------------------------------------------------------------------


def test_bf16_autocast_keeps_distances_and_updates_fp32(monkeypatch):
    x, codes = torch.randn(2048, 64), torch.randn(512, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # what autocast would do to a naive search
        naive = torch.addmm(codes.square().sum(1), x, codes.T, alpha=-2).argmin(1)
    exact = torch.cdist(x, codes).argmin(1)
    assert not torch.equal(naive, exact), "the check needs inputs that bf16 distances get wrong"

    seen = []
    addmm = torch.addmm

    def spy(*args, **kwargs):
        seen.append({a.dtype for a in args if isinstance(a, torch.Tensor)})
        return addmm(*args, **kwargs)

    monkeypatch.setattr(torch, "addmm", spy)
    q, reference = EMAVectorQuantizer(dim=64, codebook_size=512), EMAVectorQuantizer(dim=64, codebook_size=512)
    q.codebook.copy_(codes)
    q.embed_sum.copy_(codes)
    reference.load_state_dict(q.state_dict())
    z = to_maps(x, (8, 64, 16, 16))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = q(z)
    assert seen and all(dtypes == {torch.float32} for dtypes in seen)
    assert torch.equal(out.indices.reshape(-1), exact)
    assert q.codebook.dtype == torch.float32
    reference(z)
    torch.testing.assert_close(q.codebook, reference.codebook)
    vq = VectorQuantizer(dim=64, codebook_size=512)
    vq.codebook.data.copy_(codes)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(vq(z).indices.reshape(-1), exact)


# --- errors -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BUILTINS)
def test_wrong_input_shape_is_a_clear_error(name):
    q = vqstack.build("quantizer", name, dim=8)
    for bad in (torch.randn(2, 4, 4, 4), torch.randn(2, 8, 16)):
        with pytest.raises(ValueError, match=r"expects z of shape \(B, 8, H, W\)"):
            q(bad)


@pytest.mark.parametrize("factory,match", [
    (lambda: VectorQuantizer(dim=8, codebook_size=1), "codebook_size must be an int >= 2"),
    (lambda: VectorQuantizer(dim=0), "dim must be a positive int"),
    (lambda: VectorQuantizer(dim=8, dead_code_threshold=-1), "dead_code_threshold"),
    (lambda: EMAVectorQuantizer(dim=8, decay=1.0), r"decay must be in \[0, 1\)"),
    (lambda: FSQ(levels=[8, 1]), "levels must be a non-empty list of ints >= 2"),
    (lambda: LFQ(dim=8, bits=0), r"bits must be an int in \[1, 24\]"),
    (lambda: ResidualVQ(dim=8, quantizer="vqq"), "Registered quantizers: .*Did you mean 'vq'"),
    (lambda: ResidualVQ(dim=8, quantizer="fsq", codebook_size=64), "FSQ/LFQ derive their codebook size"),
])
def test_bad_arguments_are_clear_errors(factory, match):
    with pytest.raises((ValueError, TypeError, KeyError), match=match):
        factory()


def test_out_of_range_indices_are_a_clear_error():
    q = VectorQuantizer(dim=8, codebook_size=16)
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 16\)"):
        q.indices_to_codes(torch.full((1, 2, 2), 16))
    with pytest.raises(ValueError, match=r"long indices of shape \(B, H, W\)"):
        q.indices_to_codes(torch.zeros(1, 2, 2, 3, dtype=torch.long))


# --- metrics stay on the device; k-means runs once without reading the flag back ------------------------------


@pytest.mark.parametrize("name", BUILTINS)
def test_metrics_are_detached_scalar_tensors_that_float_reads(name):
    from vqstack.quantizers.base import is_metric_value

    q = vqstack.build("quantizer", name, dim=8, **({"dead_code_threshold": 1.0} if name in ("vq", "ema") else {}))
    z = torch.randn(2, 8, 4, 4, requires_grad=True)
    for mode in (q.train(), q.eval()):
        metrics = mode(z).metrics
        assert {"perplexity", "usage"} <= set(metrics)
        for key, value in metrics.items():
            assert isinstance(value, torch.Tensor) and value.dim() == 0 and not value.requires_grad, key
            assert is_metric_value(value) and isinstance(float(value), float), key
    assert 0 < float(q(z).metrics["usage"]) <= 1
    assert not is_metric_value(torch.ones(2)) and not is_metric_value(True) and is_metric_value(0.5)


def test_kmeans_runs_exactly_once_also_after_loading_a_state(monkeypatch):
    import vqstack.quantizers.codebook as codebook

    calls = []
    kmeans = codebook.kmeans
    monkeypatch.setattr(codebook, "kmeans", lambda *a, **k: calls.append(1) or kmeans(*a, **k))
    q = VectorQuantizer(dim=8, codebook_size=16, kmeans_init=True)
    fresh_state = {k: v.clone() for k, v in q.state_dict().items()}
    for _ in range(3):
        q(clustered())
    assert len(calls) == 1 and bool(q.initted) and q._initted is True
    twin = VectorQuantizer(dim=8, codebook_size=16, kmeans_init=True)
    twin.load_state_dict(q.state_dict())  # a resumed run: initialised by its checkpoint
    twin(clustered())
    assert len(calls) == 1
    q.load_state_dict(fresh_state)  # back to a checkpoint taken before k-means: it runs again, once
    q(clustered())
    q(clustered())
    assert len(calls) == 2


# --- gradient accumulation: the codebook updates count training forwards (micro-batches) -------------------------


def test_k_forwards_at_decay_to_the_1_over_k_equal_one_forward_at_decay():
    """The documented --grad-accum rule: the EMA codebook sees k forwards per optimizer step, and k updates at
    decay ** (1 / k) are one update at decay when the input stays the same."""
    k, decay = 4, 0.9
    centers = 3 * torch.randn(8, 4)
    x = centers.repeat_interleave(32, 0) + 0.05 * torch.randn(256, 4)
    z = to_maps(x, (16, 4, 4, 4))
    one = EMAVectorQuantizer(dim=4, codebook_size=8, decay=decay)
    one.codebook.copy_(centers + 0.1 * torch.randn(8, 4))  # each code nearest its own cluster, before and after
    one.embed_sum.copy_(one.codebook)
    start = {key: value.clone() for key, value in one.state_dict().items()}
    accumulating = EMAVectorQuantizer(dim=4, codebook_size=8, decay=decay ** (1 / k))
    unscaled = EMAVectorQuantizer(dim=4, codebook_size=8, decay=decay)  # k updates at decay forget more
    accumulating.load_state_dict(start)
    unscaled.load_state_dict(start)
    indices = one(z).indices
    for _ in range(k):
        assert torch.equal(accumulating(z).indices, indices), "the input must stay constant for the rule to be exact"
        unscaled(z)
    for name in ("cluster_size", "embed_sum", "codebook"):
        torch.testing.assert_close(getattr(accumulating, name), getattr(one, name), msg=name)
    assert not torch.allclose(unscaled.cluster_size, one.cluster_size)


def test_usage_ema_and_dead_code_threshold_scale_with_the_micro_batch():
    """Splitting a batch into k micro-batches divides the per-forward counts by k: with usage_decay ** (1 / k) the
    usage EMA is the whole batch's divided by k, so dead_code_threshold / k declares the same codes dead."""
    k, decay, threshold = 4, 0.8, 2.0
    micro = torch.randn(2, 8, 4, 4)
    whole = micro.repeat(k, 1, 1, 1)  # a batch of k equal micro-batches
    one = VectorQuantizer(dim=8, codebook_size=16, usage_decay=decay)
    accumulating = VectorQuantizer(dim=8, codebook_size=16, usage_decay=decay ** (1 / k))
    accumulating.load_state_dict(one.state_dict())
    accumulating.cluster_size.div_(k)  # the same usage, counted per micro-batch
    for _ in range(3):  # three optimizer steps
        one(whole)
        for _ in range(k):
            accumulating(micro)
    torch.testing.assert_close(accumulating.cluster_size * k, one.cluster_size)
    dead = one.cluster_size < threshold
    assert dead.any() and not dead.all(), "the check needs live and dead codes"
    assert torch.equal(accumulating.cluster_size < threshold / k, dead)
