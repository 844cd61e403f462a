"""A batch with a NaN or inf reaching the quantizer leaves no trace in its state (issue 19).

Before the fix one NaN element in z went into an EMA codebook row (and into k-means seeds and dead-code restarts)
inside the forward, before the training loop's NaN guard could skip the step, and the row stayed NaN for good.
The rule now: a batch that is not finite on any process updates nothing, so a quantizer fed [a, bad, b] ends
exactly as one fed [a, b]. Every registered quantizer (plugins included) is held to that known answer.
"""
import copy
import pickle

import pytest
import torch

import vqstack
import vqstack.quantizers.codebook as codebook_module
from vqstack.quantizers import EMAVectorQuantizer, VectorQuantizer
from vqstack.quantizers.codebook import HostFlag

DIM = 8

# k-means init and dead-code restarts on, with fast usage EMAs so that codes die (and get restarted) at once
MAINTAINED = {"codebook_size": 16, "kmeans_init": True, "kmeans_iters": 3, "dead_code_threshold": 2.0}
MAINTAINED_CASES = [
    pytest.param("vq", {**MAINTAINED, "usage_decay": 0.5}, id="vq-maintained"),
    pytest.param("vq", {**MAINTAINED, "usage_decay": 0.5, "l2_normalize": True, "codebook_dim": 4},
                 id="vq-l2-projected-maintained"),
    pytest.param("ema", {**MAINTAINED, "decay": 0.5}, id="ema-maintained"),
    pytest.param("residual", {"num_quantizers": 2, "quantizer": "ema",
                              "quantizer_kwargs": {**MAINTAINED, "decay": 0.5}}, id="residual-ema-maintained"),
    pytest.param("residual", {"num_quantizers": 2, "quantizer_kwargs": {**MAINTAINED, "usage_decay": 0.5}},
                 id="residual-vq-maintained"),
]
# every registered quantizer (plugins included) with its defaults, then the built-ins with their statistics on
CASES = [pytest.param(name, {}, id=name) for name in vqstack.components("quantizer")] + MAINTAINED_CASES


def build(name: str, **kwargs):
    torch.manual_seed(0)
    return vqstack.build("quantizer", name, dim=DIM, **kwargs).train()


def clean(step: int) -> torch.Tensor:
    return torch.randn(2, DIM, 4, 4, generator=torch.Generator().manual_seed(step))


def poisoned(value: float, step: int = 99) -> torch.Tensor:
    """A clean batch with one bad element, as one corrupt activation from a plugin encoder gives."""
    z = clean(step)
    z[1, 3, 2, 1] = value
    return z


def forward(q, z: torch.Tensor, seed: int):
    """One training forward with the global RNG (k-means seeds, restart candidates) at ``seed``, so that two
    quantizers fed the same clean batch make the same random choices whatever came before."""
    torch.manual_seed(seed)
    return q(z)


def state(q) -> dict:
    return {key: value.clone() for key, value in q.state_dict().items()}


def assert_finite_state(q) -> None:
    for key, value in q.state_dict().items():
        if value.is_floating_point():
            assert torch.isfinite(value).all(), f"{key} holds a NaN or inf"


def assert_same_state(q, reference) -> None:
    expected = reference.state_dict()
    for key, value in q.state_dict().items():
        assert torch.equal(value, expected[key]), f"{key} differs from the run without the bad batch"


def assert_bad_batch_output(out, q, value: float) -> None:
    """The bad batch's own output: valid indices (counting them must not crash), no restart, and a NaN input
    stays visible downstream, so the loop's guard skips the step."""
    assert out.indices.min() >= 0 and out.indices.max() < q.codebook_size
    for key in ("usage", "perplexity"):
        assert torch.isfinite(torch.as_tensor(out.metrics[key])), key
    if "restarted_codes" in out.metrics:
        assert float(out.metrics["restarted_codes"]) == 0.0, "a bad batch restarts no code"
    if value != value:  # NaN
        assert not torch.isfinite(out.quantized).all(), "a NaN input must not be hidden from the training loop"


@pytest.mark.parametrize("value", [float("nan"), float("inf")], ids=["nan", "inf"])
@pytest.mark.parametrize("name,kwargs", CASES)
def test_a_nonfinite_batch_changes_nothing(name, kwargs, value):
    q = build(name, **kwargs)
    reference = copy.deepcopy(q)
    forward(q, clean(1), seed=1)
    forward(reference, clean(1), seed=1)
    assert_bad_batch_output(forward(q, poisoned(value), seed=7), q, value)
    for step in (2, 3, 4):
        out = forward(q, clean(step), seed=step)
        expected = forward(reference, clean(step), seed=step)
        assert torch.isfinite(out.quantized).all() and torch.isfinite(out.loss)
        assert torch.equal(out.indices, expected.indices) and torch.equal(out.quantized, expected.quantized)
    assert_finite_state(q)
    assert_same_state(q, reference)
    q.eval()
    reference.eval()
    with torch.no_grad():
        assert torch.equal(q(clean(5)).quantized, reference(clean(5)).quantized)


@pytest.mark.parametrize("name,kwargs", MAINTAINED_CASES)
def test_a_nonfinite_first_batch_defers_kmeans_to_the_next(name, kwargs, monkeypatch):
    calls = []
    kmeans = codebook_module.kmeans
    monkeypatch.setattr(codebook_module, "kmeans", lambda *a, **k: calls.append(1) or kmeans(*a, **k))
    q = build(name, **kwargs)
    reference = copy.deepcopy(q)
    start = state(q)
    forward(q, poisoned(float("nan")), seed=7)
    for key, value in q.state_dict().items():
        assert torch.equal(value, start[key]), f"{key} moved on a NaN batch"
    levels = getattr(q, "levels", [q])
    assert not any(bool(level.initted) for level in levels)
    for step in (1, 2, 3):
        forward(q, clean(step), seed=step)
        forward(reference, clean(step), seed=step)
    assert all(bool(level.initted) and level._initted is True for level in levels)
    # each level: the NaN attempt and the first clean batch's for q, one for the reference; then never again
    assert len(calls) == 3 * len(levels)
    assert_finite_state(q)
    assert_same_state(q, reference)


@pytest.mark.parametrize("cls,decay", [(VectorQuantizer, "usage_decay"), (EMAVectorQuantizer, "decay")])
def test_a_nonfinite_batch_postpones_a_due_restart(cls, decay):
    """Codes 8.. are never picked: usage 1 -> 0.5 -> 0.25 < 0.3, so restarts are due at the third forward. A NaN
    third batch restarts nothing; the fourth restarts them as the third would have."""
    torch.manual_seed(0)
    q = cls(dim=4, codebook_size=16, dead_code_threshold=0.3, **{decay: 0.5})
    with torch.no_grad():
        q.codebook[8:] += 1000.0  # never nearest to anything
        if cls is EMAVectorQuantizer:
            q.embed_sum.copy_(q.codebook)
    reference = copy.deepcopy(q)
    batches = [torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    bad = batches[2].clone()
    bad[0, 1, 2, 3] = float("nan")
    restarted = [forward(q, z, seed=i).metrics["restarted_codes"] for i, z in enumerate([*batches[:2], bad])]
    restarted += [forward(q, z, seed=i).metrics["restarted_codes"] for i, z in enumerate(batches[2:], start=2)]
    expected = [forward(reference, z, seed=i).metrics["restarted_codes"] for i, z in enumerate(batches)]
    assert expected == [0.0, 0.0, 8.0, 0.0]
    assert restarted == [0.0, 0.0, 0.0, 8.0, 0.0]
    assert_finite_state(q)
    assert_same_state(q, reference)
    assert q.codebook[8:].abs().max() < 10, "the dead codes were restarted on batch vectors"


def test_host_flag_hands_a_posted_value_to_the_next_read_once():
    """The one-forward-late decisions (retry k-means, restart dead codes): each post is read once, as posted."""
    flag = HostFlag()
    assert flag.take() is None, "nothing posted: the caller must check on the device"
    live = torch.tensor(True)
    flag.post(live)
    live.fill_(False)  # e.g. the ``initted`` buffer moving on: the posted value is a copy
    assert flag.take() is True and flag.take() is None
    flag.post(torch.tensor(False))
    # a copy of the owner (weight EMA, pickle) must not act on a decision about the original's state
    assert copy.deepcopy(flag).take() is None and pickle.loads(pickle.dumps(flag)).take() is None
    assert flag.take() is False
