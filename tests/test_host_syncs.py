"""A training step never reads a device tensor back to the host (issue #9).

On a GPU every ``.item()``, ``float(t)``, ``bool(t)``, ``nonzero`` or ``bincount`` in the forward waits for all
queued kernels, so the step stalls. The CPU tests here make each such Python-level read raise while a training
forward and backward run: every built-in quantizer (with k-means init and dead-code restarts switched on), a
Tokenizer, a VQGAN generator + discriminator step with the GAN, the adaptive weight and LeCAM active, and a prior
training step (``ar`` and the ``maskgit`` plugin, class and attribute labels). Metrics and logs stay 0-dim tensors
until log time (``reporting.to_float_dict``); token ranges are checked without a read (``Prior.check_range``) and
once when a token dataset loads.

What the patch cannot see: reads inside torch's C++ (``bincount``, boolean-mask indexing and ``nonzero`` sync
there, so those ops are refused by name), and blocking host->device copies (``torch.tensor(..., device="cuda")``).
The CUDA variant at the end runs the same steps under ``torch.cuda.set_sync_debug_mode("error")``, which sees
both; it is skipped without a GPU.
"""
import contextlib
import math

import pytest
import torch

import vqstack
from vqstack.quantizers.base import is_metric_value
from vqstack.conformance import build_example
from vqstack.training.objectives import LossWeights, VQGANObjective
from vqstack.training.reporting import FloatView, to_float_dict


class HostSync(AssertionError):
    """A device->host read in code that must not make one."""


# Python-level entry points that read a tensor's values on the host (each a sync on a GPU)
TENSOR_READS = ("item", "tolist", "numpy", "cpu", "__float__", "__int__", "__index__", "__bool__", "nonzero",
                "argwhere", "unique", "masked_select")
# ops whose output shape depends on the data: their CUDA kernels read values back to size it
TORCH_READS = ("nonzero", "argwhere", "unique", "masked_select", "bincount")


def _refuse(what: str):
    def refuse(*args, **kwargs):
        raise HostSync(f"{what} reads a device tensor back to the host inside a training step")
    return refuse


def _has_bool_mask(index) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in items)


@contextlib.contextmanager
def no_host_syncs():
    """Within the block, every Python-level host read of a tensor raises :class:`HostSync`."""
    getitem, setitem = torch.Tensor.__getitem__, torch.Tensor.__setitem__

    def checked_getitem(self, index):
        if _has_bool_mask(index):  # x[mask] runs nonzero(mask) in C++
            raise HostSync("boolean-mask indexing reads the mask back to the host inside a training step")
        return getitem(self, index)

    def checked_setitem(self, index, value):
        if _has_bool_mask(index):
            raise HostSync("boolean-mask assignment reads the mask back to the host inside a training step")
        return setitem(self, index, value)

    with pytest.MonkeyPatch.context() as patch:
        for name in TENSOR_READS:
            patch.setattr(torch.Tensor, name, _refuse(f"Tensor.{name}"))
        for name in TORCH_READS:
            patch.setattr(torch, name, _refuse(f"torch.{name}"))
        patch.setattr(torch.Tensor, "__getitem__", checked_getitem)
        patch.setattr(torch.Tensor, "__setitem__", checked_setitem)
        yield


@contextlib.contextmanager
def no_syncs_on(device: torch.device):
    """:func:`no_host_syncs`, and on CUDA also torch's sync debug mode set to raise on any synchronising call."""
    with no_host_syncs():
        if device.type != "cuda":
            yield
            return
        torch.cuda.synchronize()
        previous = torch.cuda.get_sync_debug_mode()
        torch.cuda.set_sync_debug_mode("error")
        try:
            yield
        finally:
            torch.cuda.set_sync_debug_mode(previous)


def test_the_guard_catches_each_kind_of_host_read():
    t, mask = torch.ones(3), torch.tensor([True, False, True])
    reads = [lambda: t.sum().item(), lambda: float(t.sum()), lambda: int(t.sum()), lambda: bool(t.sum() > 0),
             lambda: t.tolist(), lambda: mask.nonzero(), lambda: torch.nonzero(mask), lambda: t[mask],
             lambda: t.__setitem__(mask, 0.0), lambda: torch.bincount(mask.long()), lambda: range(t.sum().long())]
    with no_host_syncs():
        for read in reads:
            with pytest.raises(HostSync):
                read()
        assert torch.equal(t[1:] * 2, torch.full((2,), 2.0))  # slicing and arithmetic stay allowed
    assert t.sum().item() == 3.0  # and everything is back afterwards


# --- the steps, shared by the CPU and the CUDA tests ------------------------------------------------------------

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                 reason="needs a CUDA device"))]

# Arguments that switch on every code path with a host-side decision in the old code: k-means init (first forward)
# and dead-code restarts (a threshold most codes of a small batch fall below).
MAINTAINED = {"kmeans_init": True, "dead_code_threshold": 2.0}


def builtin_quantizers() -> list[str]:
    """The registered quantizers vqstack itself provides (a plugin's may return floats and read what it likes)."""
    quantizers = vqstack.registry("quantizer")
    return [name for name in vqstack.components("quantizer") if quantizers.owner(name) == "vqstack.quantizers"]


QUANTIZER_CASES = [
    *[(name, {}) for name in builtin_quantizers()],
    ("vq", MAINTAINED),
    ("vq", {**MAINTAINED, "l2_normalize": True, "codebook_dim": 4}),
    ("ema", MAINTAINED),
    ("residual", {"quantizer_kwargs": MAINTAINED}),
    ("residual", {"quantizer": "ema", "quantizer_kwargs": MAINTAINED}),
    ("residual", {"quantizer": "lfq", "codebook_size": None, "quantizer_kwargs": {"bits": 6}}),
]


def maintained(name: str) -> dict:
    """The k-means / restart arguments for quantizer ``name`` (none for FSQ and LFQ, which have no codebook)."""
    return {"vq": MAINTAINED, "ema": MAINTAINED, "residual": {"quantizer_kwargs": MAINTAINED}}.get(name, {})


def assert_metrics_contract(metrics: dict, what: str) -> None:
    assert {"perplexity", "usage"} <= set(metrics), what
    for key, value in metrics.items():
        assert is_metric_value(value), f"{what}: metrics[{key!r}] = {value!r}"
        assert math.isfinite(float(value)), f"{what}: metrics[{key!r}] is not finite"


def quantizer_steps(q, device: torch.device, steps: int = 2):
    """``steps`` training forwards + backwards with host reads refused; the last output."""
    for _ in range(steps):
        z = torch.randn(2, q.dim, 4, 4, device=device, requires_grad=True)
        with no_syncs_on(device):
            out = q(z)
            (out.quantized.square().mean() + out.loss).backward()
    return out


def tiny_tokenizer(quantizer: str, **kwargs) -> vqstack.Tokenizer:
    return vqstack.Tokenizer(encoder=build_example("encoder", "conv"),
                             quantizer=build_example("quantizer", quantizer, **kwargs),
                             decoder=build_example("decoder", "conv"))


def warm_up(make, step, device: torch.device) -> None:
    """One unguarded step on a twin: CUDA's first kernels create library handles, which is not our concern."""
    if device.type == "cuda":
        step(make())


# --- quantizers -------------------------------------------------------------------------------------------------


def case_id(name: str, kwargs: dict) -> str:
    """e.g. "residual-quantizer-kmeans_init-dead_code_threshold": the name and the arguments the case sets."""
    flags = [key for key in kwargs if key != "quantizer_kwargs"] + list(kwargs.get("quantizer_kwargs", {}))
    return "-".join([name, *flags])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name,kwargs", QUANTIZER_CASES, ids=[case_id(n, k) for n, k in QUANTIZER_CASES])
def test_quantizer_training_step_reads_nothing_back(name, kwargs, device):
    device = torch.device(device)

    def make():
        torch.manual_seed(0)
        return build_example("quantizer", name, **kwargs).to(device).train()

    warm_up(make, lambda q: quantizer_steps(q, device, steps=1), device)
    q = make()
    out = quantizer_steps(q, device)
    assert_metrics_contract(out.metrics, name)
    levels = getattr(q, "levels", [q])
    if any(getattr(level, "dead_code_threshold", 0) > 0 for level in levels):
        assert float(out.metrics["restarted_codes"]) > 0, "the case must exercise dead-code restarts"
    if any(getattr(level, "kmeans_init", False) for level in levels):
        assert all(bool(level.initted) for level in levels), "the case must run k-means"


# --- the tokenizer ----------------------------------------------------------------------------------------------


def tokenizer_steps(tok, images: torch.Tensor, device: torch.device, steps: int = 2):
    for _ in range(steps):
        with no_syncs_on(device):
            out = tok(images)
            (out.recon.square().mean() + out.loss).backward()
    return out


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", builtin_quantizers())
def test_tokenizer_training_step_reads_nothing_back(name, device):
    device = torch.device(device)
    images = torch.rand(2, 3, 32, 32, device=device) * 2 - 1

    def make():
        torch.manual_seed(0)
        return tiny_tokenizer(name, **maintained(name)).to(device).train()

    warm_up(make, lambda tok: tokenizer_steps(tok, images, device, steps=1), device)
    out = tokenizer_steps(make(), images, device)
    assert_metrics_contract(out.metrics, f"Tokenizer with {name}")


# --- the VQGAN objective ----------------------------------------------------------------------------------------


def vqgan_steps(tok, objective, images: torch.Tensor, device: torch.device, steps: int = 2) -> dict:
    """Generator then discriminator loss and backward, as the recipe does (without the optimizers, whose steps are
    not our code); the last step's logs."""
    for step in range(steps):
        with no_syncs_on(device):
            out = tok(images)
            loss, logs = objective.generator_loss(images, out, step, tok.decoder.last_layer)
            loss.backward()
            d_loss, d_logs = objective.discriminator_loss(images, out.recon, step)
            d_loss.backward()
            logs.update(d_logs, usage=out.metrics["usage"], perplexity=out.metrics["perplexity"])
    return logs


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("discriminator", ["patchgan", "stylegan"])
def test_vqgan_objective_step_reads_nothing_back(discriminator, device):
    device = torch.device(device)
    images = torch.rand(2, 3, 32, 32, device=device) * 2 - 1
    weights = LossWeights(perceptual=0.0, adversarial=0.1, adaptive=True, disc_start=0, lecam=0.1)

    def make():
        torch.manual_seed(0)
        tok = tiny_tokenizer("vq", **MAINTAINED).to(device).train()
        return tok, VQGANObjective(weights, discriminator=build_example("discriminator", discriminator).to(device))

    warm_up(make, lambda parts: vqgan_steps(*parts, images, device, steps=1), device)
    tok, objective = make()
    assert objective.gan_active(0)
    logs = vqgan_steps(tok, objective, images, device)
    assert {"g_adv_loss", "adaptive_weight", "d_loss", "logits_real"} <= set(logs)
    assert all(isinstance(v, torch.Tensor) and is_metric_value(v) for v in logs.values()), logs
    floats = to_float_dict(logs)  # log time: the one read
    assert list(floats) == list(logs) and all(isinstance(v, float) and math.isfinite(v) for v in floats.values())
    assert bool(objective.lecam.initialized)


# --- log time -----------------------------------------------------------------------------------------------------


def test_to_float_dict_reads_tensors_and_numbers_in_the_callers_order():
    logs = {"loss": torch.tensor(0.5), "lr": 1e-4, "steps": 3, "usage": torch.tensor(0.25, dtype=torch.bfloat16)}
    assert to_float_dict(logs) == {"loss": 0.5, "lr": 1e-4, "steps": 3.0, "usage": 0.25}
    assert all(type(v) is float for v in to_float_dict(logs).values())


def test_float_view_reads_nothing_until_an_observer_looks():
    logs = {"loss": torch.tensor(0.5), "usage": torch.tensor(0.25)}
    with no_host_syncs():
        view = FloatView(logs)
        assert len(view) == 2 and list(view) == ["loss", "usage"] and "loss" in view and "lr" not in view
    logs["loss"] = torch.tensor(9.0)  # the loop goes on updating its dict: the view keeps this step's values
    assert view["loss"] == 0.5 and dict(view) == {"loss": 0.5, "usage": 0.25}
    assert type(view["usage"]) is float
    with pytest.raises(KeyError):
        view["lr"]


# --- priors -------------------------------------------------------------------------------------------------------

PRIORS = [name if name in vqstack.components("prior") else
          pytest.param(name, marks=pytest.mark.skip(reason=f"prior {name!r} is not installed here"))
          for name in ("ar", "maskgit")]


def prior_steps(prior, tokens: torch.Tensor, labels: list, device: torch.device, steps: int = 2):
    """``steps`` training forwards + backwards of a prior, as the prior recipe runs them (labels as Python values)."""
    for _ in range(steps):
        with no_syncs_on(device):
            out = prior(tokens, labels=labels)
            out.loss.backward()
    return out


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("conditions", [{}, {"num_classes": 0, "attributes": {"hair": ["blue", "red"]}}],
                         ids=["class", "attributes"])
@pytest.mark.parametrize("name", PRIORS)
def test_prior_training_step_reads_nothing_back(name, conditions, device):
    device = torch.device(device)

    def make():
        torch.manual_seed(0)
        return build_example("prior", name, **conditions).to(device).train()

    prior = make()
    tokens = torch.randint(0, prior.vocab_size, (4, prior.seq_len), device=device)
    labels = [0, 2, None, 1] if prior.conditions.mode == "class" else ["blue hair", None, "red hair", "blue hair"]
    warm_up(make, lambda p: prior_steps(p, tokens, labels, device, steps=1), device)
    out = prior_steps(prior, tokens, labels, device)
    assert out.loss.dim() == 0 and math.isfinite(float(out.loss.detach()))
    assert all(p.grad is not None for p in prior.head.parameters())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", PRIORS)
def test_image_conditioned_prior_training_step_reads_nothing_back(name, device):
    """The condition images' checks, embedding and dropout (image_dropout) add no host read to a training step."""
    device = torch.device(device)

    def make():
        torch.manual_seed(0)
        return build_example("prior", name, image_condition={"name": "grayscale", "kwargs": {}}, patch_size=2,
                            image_dropout=0.5).to(device).train()

    def steps(prior, count):
        for _ in range(count):
            with no_syncs_on(device):
                out = prior(tokens, labels=[0, 2, None, 1], image=images)
                out.loss.backward()
        return out

    prior = make()
    tokens = torch.randint(0, prior.vocab_size, (4, prior.seq_len), device=device)
    images = torch.rand(4, 1, *prior.condition_size, device=device) * 2 - 1
    warm_up(make, lambda p: steps(p, 1), device)
    out = steps(prior, 2)
    assert math.isfinite(float(out.loss.detach()))
    assert prior.image_embed.patchify.weight.grad is not None


def test_prior_token_range_is_still_checked_without_a_host_read():
    """The sync-free range check still refuses a token outside the vocabulary, naming it, on the CPU."""
    prior = build_example("prior", "ar").train()
    with no_host_syncs(), pytest.raises(ValueError, match=r"tokens must lie in \[0, 32\)"):
        prior(torch.full((2, prior.seq_len), 32))


def test_token_datasets_are_range_checked_once_at_load(tmp_path):
    """What the training step no longer reads back is checked when the tokens load: a clear error on any device."""
    from datasets import Dataset

    from vqstack.data.images import DataError
    from vqstack.data.tokens import load_token_dataset, save_token_dataset

    save_token_dataset(Dataset.from_dict({"tokens": [[0, 5, 31, 2], [7, 7, 1, 3]]}), tmp_path / "ok", (2, 2), 32)
    tokens, info = load_token_dataset(tmp_path / "ok")
    assert len(tokens) == 2 and info["codebook_size"] == 32
    save_token_dataset(Dataset.from_dict({"tokens": [[0, 5, 31, 2], [7, 40, 1, 3]]}), tmp_path / "bad", (2, 2), 32)
    with pytest.raises(DataError, match=r"tokens span \[0, 40\] but tokens_info.json says codebook_size=32"):
        load_token_dataset(tmp_path / "bad")
