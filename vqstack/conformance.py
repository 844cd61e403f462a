"""Conformance checks for components, exported so plugin authors run the same checks vqstack runs.

    from vqstack.conformance import check_component
    check_component("quantizer", "my-vq")        # builds it with example_kwargs() and checks the contract

Each check raises ``AssertionError`` naming the broken rule. ``example_kwargs()`` is an optional classmethod on a
factory returning small sizes for fast checks; without it the component is built with its defaults (quantizers
with ``dim=8``).

:func:`check_registered` runs the checks over every registered component and reports each as ok, failed or skipped
(a component that needs weights or a package not installed here); ``vqstack plugins --check`` prints that report.
"""
from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass

import torch

from .core.plugins import registry
from .core.registry import KIND_HOOKS, component_spec
from .core.serialization import load_component, save_component
from .quantizers.base import QuantizerOutput, is_metric_value

QUANTIZER_TEST_DIM = 8


def example_kwargs(kind: str, name: str) -> dict:
    """Small-size arguments for building ``name`` in checks and tests."""
    factory = registry(kind).get(name)
    kwargs = dict(factory.example_kwargs()) if hasattr(factory, "example_kwargs") else {}
    if kind == "quantizer":
        kwargs.setdefault("dim", QUANTIZER_TEST_DIM)
    return kwargs


def build_example(kind: str, name: str, **overrides):
    """Build registered component ``name`` of ``kind`` with its :func:`example_kwargs` (small sizes), ``overrides``
    replacing any of them: what the checks run on.

        build_example("prior", "ar", num_classes=0)   # ar's tiny sizes, unconditional"""
    return registry(kind).build(name, **{**example_kwargs(kind, name), **overrides})


def _assert_grad_reaches(x: torch.Tensor, what: str) -> None:
    assert x.grad is not None, f"{what}: no gradient reached the input"
    assert torch.isfinite(x.grad).all(), f"{what}: the input gradient has NaN or inf"
    assert x.grad.abs().sum() > 0, f"{what}: the input gradient is all zeros"


def _assert_same_outputs(a, b, x: torch.Tensor, what: str) -> None:
    with torch.no_grad():
        ya, yb = a(x), b(x)
    ya, yb = _main_tensor(ya), _main_tensor(yb)
    torch.testing.assert_close(ya, yb, msg=f"{what}: outputs differ after the round trip")


def _main_tensor(output):
    """The tensor a component's output is judged by: quantized codes, prior logits, or the output itself."""
    if isinstance(output, QuantizerOutput):
        return output.quantized
    return getattr(output, "logits", output)


def check_round_trips(component, x: torch.Tensor) -> None:
    """A state-dict copy and a save_component/load_component copy compute the same outputs in eval mode."""
    component.eval()
    spec = component_spec(component)
    if spec is None:
        return  # not built by name: nothing to rebuild it from
    twin = registry(spec["kind"]).build(spec["name"], **spec["kwargs"])
    twin.load_state_dict(component.state_dict())
    _assert_same_outputs(component, twin.eval(), x, f"{spec['name']}: state_dict round trip")
    with tempfile.TemporaryDirectory() as tmp:
        save_component(component, tmp)
        loaded = load_component(tmp)
    _assert_same_outputs(component, loaded.eval(), x, f"{spec['name']}: save/load round trip")


def check_quantizer(q, batch: int = 2, height: int = 4, width: int = 4) -> None:
    name = type(q).__name__
    assert isinstance(q.dim, int) and q.dim > 0, f"{name}.dim must be a positive int"
    assert isinstance(q.codebook_size, int) and q.codebook_size > 1, f"{name}.codebook_size must be an int > 1"
    q.train()
    z = torch.randn(batch, q.dim, height, width, requires_grad=True)
    out = q(z)
    assert isinstance(out, QuantizerOutput), f"{name} must return vqstack.QuantizerOutput, got {type(out)}"
    assert out.quantized.shape == z.shape, f"{name}: quantized shape {tuple(out.quantized.shape)} != z's"
    assert out.indices.dtype == torch.long, f"{name}: indices must be long, got {out.indices.dtype}"
    assert out.indices.shape[:3] == (batch, height, width) and out.indices.dim() in (3, 4), (
        f"{name}: indices must be (B, H, W) or (B, H, W, Q), got {tuple(out.indices.shape)}")
    assert out.indices.min() >= 0 and out.indices.max() < q.codebook_size, f"{name}: index out of range"
    assert out.loss.dim() == 0 and torch.isfinite(out.loss), f"{name}: loss must be a finite scalar"
    for key in ("perplexity", "usage"):
        assert is_metric_value(out.metrics.get(key)), (
            f"{name}: metrics[{key!r}] must be a real number float() reads: a float or a detached 0-dim tensor")
    (out.quantized.square().sum() + out.loss).backward()
    _assert_grad_reaches(z, name)

    q.eval()
    with torch.no_grad():
        out = q(z)
        codes = q.indices_to_codes(out.indices)
    torch.testing.assert_close(codes, out.quantized, atol=1e-4, rtol=1e-4,
                               msg=f"{name}: indices_to_codes(indices) != quantized in eval mode")
    check_round_trips(q, z.detach())


def check_encoder(encoder, batch: int = 2) -> None:
    name = type(encoder).__name__
    f = encoder.downsample
    size = max(16, 2 * f)
    x = torch.randn(batch, 3, size, size, requires_grad=True)
    y = encoder(x)
    assert y.shape == (batch, encoder.out_channels, size // f, size // f), (
        f"{name}: output {tuple(y.shape)} != (B, out_channels, H/{f}, W/{f})")
    y.square().mean().backward()
    _assert_grad_reaches(x, name)
    check_round_trips(encoder, x.detach())


def check_decoder(decoder, batch: int = 2) -> None:
    name = type(decoder).__name__
    f = decoder.upsample
    h = 2
    x = torch.randn(batch, decoder.in_channels, h, h, requires_grad=True)
    y = decoder(x)
    assert y.shape == (batch, 3, h * f, h * f), f"{name}: output {tuple(y.shape)} != (B, 3, h*{f}, w*{f})"
    y.square().mean().backward()
    _assert_grad_reaches(x, name)
    check_round_trips(decoder, x.detach())


def check_discriminator(discriminator, batch: int = 2, size: int = 32) -> None:
    name = type(discriminator).__name__
    x = torch.randn(batch, 3, size, size, requires_grad=True)
    logits = discriminator(x)
    assert logits.shape[0] == batch and logits.is_floating_point(), f"{name}: logits must be float (B, ...)"
    logits.mean().backward()
    _assert_grad_reaches(x, name)
    check_round_trips(discriminator, x.detach())


def check_perceptual(perceptual, batch: int = 2, size: int = 32) -> None:
    name = type(perceptual).__name__
    x = torch.rand(batch, 3, size, size) * 2 - 1
    y = (x + 0.3 * torch.randn_like(x)).clamp(-1, 1).requires_grad_(True)
    d = perceptual(x, y)
    assert d.shape == (batch,), f"{name}: must return a per-sample distance (B,), got {tuple(d.shape)}"
    assert all(not p.requires_grad for p in perceptual.parameters()), f"{name}: parameters must be frozen"
    d.sum().backward()
    _assert_grad_reaches(y, name)
    with torch.no_grad():
        same = perceptual(x, x)
    assert same.abs().max() < 1e-4 + 1e-3 * d.detach().abs().max(), f"{name}: distance of identical images != 0"


GENERATE_ARGUMENTS = ("n", "labels", "cfg_scale", "temperature", "top_k", "top_p", "generator")  # DESIGN.md

# What recipes/prior_anime.py gives a prior besides vocab_size and seq_len: its preset's sizes (ar's own, here
# tiny) and dropouts, and per kind of run the conditions (with a label to train on). build_prior passes a prior only
# the arguments it takes, so a prior with other sizes builds too, if it has defaults for them.
RECIPE_SIZES = {"dim": 32, "depth": 1, "heads": 2, "cond_dropout": 0.1}
RECIPE_RUNS = {
    "unconditional": ({}, None),
    "class": ({"num_classes": 2, "class_names": ["cat", "dog"]}, "dog"),
    "attributes": ({"attributes": {"hair": ["blue", "red"]}, "group_dropout": 0.1}, "blue hair"),
}


def missing_generate_arguments(prior) -> list[str]:
    """The arguments of the contract's ``generate`` that ``prior.generate`` does not take (``**kwargs`` takes all)."""
    from .priors.sampling import takes_argument

    return [name for name in GENERATE_ARGUMENTS if not takes_argument(prior.generate, name)]


def check_prior(prior, batch: int = 2) -> None:
    """The prior contract (docs/plugins.md): ``generate`` takes the contract's arguments by name; ``vocab_size`` and
    ``seq_len`` are ints; a training forward gives a finite scalar loss, (B, seq_len, vocab_size) logits and a
    gradient; ``generate`` gives long (n, seq_len) tokens in range, the same for the same seed, and keeps
    ``known=`` tokens when it takes them; both round trips. A prior built by name is also built as the prior recipe
    builds it (:func:`check_recipe_builds`), and when its constructor takes ``image_condition``, with an image
    condition (:func:`check_image_condition_prior`)."""
    name = type(prior).__name__
    missing = missing_generate_arguments(prior)
    assert not missing, (f"{name}: generate() lacks {', '.join(missing)}; a prior's generate takes "
                         f"{', '.join(GENERATE_ARGUMENTS)} (Pipeline and vqstack sample pass them by name)")
    assert isinstance(prior.vocab_size, int) and isinstance(prior.seq_len, int), f"{name}: vocab_size, seq_len ints"
    tokens = torch.randint(0, prior.vocab_size, (batch, prior.seq_len))
    prior.train()
    out = prior(tokens)
    assert out.loss.dim() == 0 and torch.isfinite(out.loss), f"{name}: loss must be a finite scalar"
    assert out.logits.shape == (batch, prior.seq_len, prior.vocab_size), f"{name}: logits must be (B, L, V)"
    out.loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in prior.parameters()), f"{name}: no gradient"
    prior.eval()
    with torch.no_grad():
        first = prior.generate(batch, generator=torch.Generator().manual_seed(0))
        again = prior.generate(batch, generator=torch.Generator().manual_seed(0))
    assert first.dtype == torch.long and first.shape == (batch, prior.seq_len), f"{name}: generate -> long (n, L)"
    assert first.min() >= 0 and first.max() < prior.vocab_size, f"{name}: generated token out of range"
    assert torch.equal(first, again), f"{name}: the same generator seed must give the same tokens"
    check_known_tokens_kept(prior, batch)
    check_round_trips(prior, tokens)
    spec = component_spec(prior)
    if spec is not None:
        check_recipe_builds(spec["name"], prior.vocab_size, prior.seq_len, batch)
        if takes_image_condition(registry("prior").get(spec["name"])):
            plain = prior if getattr(prior, "image_condition", None) is None else None
            check_image_condition_prior(spec["name"], batch, unconditioned=plain)


# The condition the image-condition checks build a prior for: one channel, no weights, no random draws.
CHECK_CONDITION = {"name": "grayscale", "kwargs": {}}


def takes_image_condition(factory) -> bool:
    """Whether a prior declares image-condition support: its constructor takes ``image_condition``."""
    from .priors.build import constructor_parameters

    found = constructor_parameters(factory)
    return found is not None and "image_condition" in found[0]


def check_image_condition_prior(name: str, batch: int = 2, unconditioned=None) -> None:
    """A prior that takes ``image_condition`` (Prior.init_image_condition) reads condition images: built for the
    grayscale condition with ``patch_size=2`` on its example sizes, it records the condition, trains with
    ``image=`` (one step makes its logits depend on the image), samples with ``image=`` deterministically, keeps
    ``known=`` tokens, guides with each ``cfg_target`` it has conditions for, refuses a wrong image (and the prior
    built without a condition, ``unconditioned``, refuses any) in one line, saves and loads with its condition, and
    refuses another condition (``check_image_condition``)."""
    from .priors.sampling import takes_argument

    kwargs = example_kwargs("prior", name)
    seq_len = kwargs.get("seq_len", 16)
    side = int(round(seq_len ** 0.5))
    grid = [side, side] if side * side == seq_len else [1, seq_len]
    torch.manual_seed(0)
    prior = build_example("prior", name, image_condition=CHECK_CONDITION, patch_size=2, grid=grid)
    assert getattr(prior, "image_condition", None) == CHECK_CONDITION, (
        f"{name}: image_condition must record the condition's config, got {getattr(prior, 'image_condition', None)}")
    assert prior.condition_channels == 1 and tuple(prior.condition_size) == (2 * grid[0], 2 * grid[1]), (
        f"{name}: condition_channels / condition_size do not follow the condition and grid")
    for argument in ("image", "cfg_target"):
        assert takes_argument(prior.generate, argument), f"{name}: generate() must take {argument}= with a condition"
    tokens = torch.randint(0, prior.vocab_size, (batch, prior.seq_len))
    images = torch.rand(batch, 1, *prior.condition_size) * 2 - 1
    other = -images

    prior.train()
    optimizer = torch.optim.Adam(prior.parameters(), lr=1e-2)
    out = prior(tokens, image=images)
    assert out.loss.dim() == 0 and torch.isfinite(out.loss), f"{name}: loss with image= must be a finite scalar"
    assert out.logits.shape == (batch, prior.seq_len, prior.vocab_size), f"{name}: logits with image= (B, L, V)"
    out.loss.backward()
    optimizer.step()
    prior.eval()
    with torch.no_grad():
        one, two, null = (prior(tokens, image=x).logits for x in (images, other, None))
    assert not torch.allclose(one, two), f"{name}: the condition image does not reach the logits"
    assert not torch.allclose(one, null), f"{name}: image=None (the null condition) must differ from an image"

    def generate(**options):
        with torch.no_grad():
            return prior.generate(batch, image=images, generator=torch.Generator().manual_seed(0), **options)

    first = generate()
    assert first.shape == (batch, prior.seq_len) and first.min() >= 0 and first.max() < prior.vocab_size, (
        f"{name}: generate(image=...) -> long (n, seq_len) tokens in range")
    assert torch.equal(first, generate()), f"{name}: generate(image=...) must be the same for the same seed"
    if takes_argument(prior.generate, "known"):
        known = torch.full((batch, prior.seq_len), -1, dtype=torch.long)
        known[:, 1::2] = torch.randint(0, prior.vocab_size, (batch, prior.seq_len // 2))
        kept = known >= 0
        assert torch.equal(generate(known=known).cpu()[kept], known[kept]), (
            f"{name}: generate(image=..., known=...) must keep the known tokens")
    targets = ["both", "image"] + (["labels"] if prior.conditions.is_conditional else [])
    for target in targets:
        guided = generate(cfg_scale=3.0, cfg_target=target)
        assert guided.shape == first.shape and guided.min() >= 0 and guided.max() < prior.vocab_size, (
            f"{name}: guided generate(cfg_target={target!r}) -> tokens in range")
    refusals = [(lambda: prior(tokens, image=torch.rand(batch, 3, *prior.condition_size)), "3 channels"),
                (lambda: prior(tokens, image=torch.rand(batch, 1, 4, 4)), "another size"),
                (lambda: generate(cfg_scale=2.0, cfg_target="colour"), "cfg_target='colour'")]
    if unconditioned is not None:
        refusals.append((lambda: unconditioned(tokens, image=images), "image= to a prior without a condition"))
    for call, what in refusals:
        try:
            call()
        except ValueError as err:
            assert "\n" not in str(err), f"{name}: the error for {what} must be one line: {err}"
        else:
            raise AssertionError(f"{name}: {what} must raise a one-line ValueError")

    with tempfile.TemporaryDirectory() as tmp:
        save_component(prior, tmp)
        loaded = load_component(tmp, kind="prior").eval()
    assert loaded.image_condition == prior.image_condition, f"{name}: the condition must survive save/load"
    with torch.no_grad():
        torch.testing.assert_close(loaded(tokens, image=images).logits, one,
                                   msg=f"{name}: save/load changes the logits with image=")
    loaded.check_image_condition("grayscale")
    try:
        loaded.check_image_condition("lineart")
    except ValueError:
        pass
    else:
        raise AssertionError(f"{name}: check_image_condition must refuse a condition it was not trained for")


def check_known_tokens_kept(prior, batch: int = 2) -> None:
    """A ``generate`` that takes ``known=`` (inpainting, outpainting) returns its known tokens unchanged."""
    from .priors.sampling import takes_argument

    if not takes_argument(prior.generate, "known"):
        return  # optional: Pipeline.inpaint / outpaint refuse such a prior in one line (generate_options)
    known = torch.full((batch, prior.seq_len), -1, dtype=torch.long)
    known[:, ::2] = torch.randint(0, prior.vocab_size, (batch, (prior.seq_len + 1) // 2))
    with torch.no_grad():
        out = prior.generate(batch, known=known, generator=torch.Generator().manual_seed(0))
    kept = known >= 0
    assert torch.equal(out.cpu()[kept], known[kept]), (
        f"{type(prior).__name__}: generate(known=...) must keep the known tokens (-1 = sample), it changed some")


def check_recipe_builds(name: str, vocab_size: int, seq_len: int, batch: int = 2) -> None:
    """The prior recipe (recipes/prior_anime.py, ``--prior NAME``) builds registered prior ``name`` with
    ``build_prior`` from its sizes (:data:`RECIPE_SIZES`) for an unconditional, a class- and an
    attribute-conditional run, and each trains a step with its labels."""
    from .priors.build import build_prior

    for mode, (conditions, label) in RECIPE_RUNS.items():
        try:
            prior = build_prior(name, vocab_size=vocab_size, seq_len=seq_len, **RECIPE_SIZES, **conditions)
        except (ValueError, TypeError) as err:
            raise AssertionError(f"{name}: the prior recipe cannot build it ({mode} run): {one_line(err)}") from err
        got = getattr(getattr(prior, "conditions", None), "mode", None)
        assert got == mode, f"{name}: built with {conditions or 'no conditions'} it must be {mode}, got {got}"
        loss = prior.train()(torch.randint(0, vocab_size, (batch, seq_len)), labels=[label] * batch).loss
        assert loss.dim() == 0 and torch.isfinite(loss), f"{name}: a {mode} training step gives no finite loss"


def check_features(network, batch: int = 2, size: int = 32) -> None:
    """A feature network maps images in [-1, 1] of any size to float (B, num_features), frozen and deterministic
    (also after ``.train()``, which a training loop calls on everything it owns)."""
    name = type(network).__name__
    assert isinstance(network.num_features, int) and network.num_features > 0, f"{name}.num_features: positive int"
    assert isinstance(network.description, str) and network.description, f"{name}.description: say what it is"
    assert all(not p.requires_grad for p in network.parameters()), f"{name}: parameters must be frozen"
    x = torch.rand(batch, 3, size, size) * 2 - 1
    with torch.no_grad():
        first = network(x)
        network.train()
        again = network(x)
        other_size = network(torch.rand(1, 3, size + 8, size + 8) * 2 - 1)
    assert first.is_floating_point() and first.shape == (batch, network.num_features), (
        f"{name}: must return float (B, num_features) = {(batch, network.num_features)}, got {first.dtype} "
        f"{tuple(first.shape)}")
    assert torch.isfinite(first).all(), f"{name}: features have NaN or inf"
    assert other_size.shape == (1, network.num_features), f"{name}: any image size must give (B, num_features)"
    torch.testing.assert_close(again, first, msg=f"{name}: the same images must give the same features, also after "
                                                 f".train()")


def check_restorer(restorer, batch: int = 2) -> None:
    """A restorer maps (B, 3, S, S) images to a RestorerOutput on the tokenizer's grid, passes gradients to its
    input, starts from its tokenizer with ``init_from_tokenizer``, and its output decodes at every fidelity."""
    from .restorers.base import RestorerOutput, blend_codes
    from .tokenizer import Tokenizer

    name = type(restorer).__name__
    for attribute in ("codebook_size", "dim", "image_size", "downsample"):
        value = getattr(restorer, attribute, None)
        assert isinstance(value, int) and value > 0, f"{name}.{attribute} must be a positive int, got {value!r}"
    assert isinstance(getattr(restorer, "tokenizer_config", None), dict), (
        f"{name}.tokenizer_config must be the tokenizer's config dict (Restorer.init_tokenizer stores it)")
    size, f = restorer.image_size, restorer.downsample
    grid = (size // f, size // f)
    tokenizer = Tokenizer.from_config(restorer.tokenizer_config).eval()
    restorer.init_from_tokenizer(tokenizer)
    x = (torch.rand(batch, 3, size, size) * 2 - 1).requires_grad_(True)
    restorer.train()
    out = restorer(x)
    assert isinstance(out, RestorerOutput), f"{name} must return vqstack.RestorerOutput, got {type(out)}"
    assert out.logits.is_floating_point() and out.logits.shape == (batch, restorer.codebook_size, *grid), (
        f"{name}: logits must be float (B, codebook_size, h, w) = {(batch, restorer.codebook_size, *grid)}, got "
        f"{tuple(out.logits.shape)}")
    assert out.features.is_floating_point() and out.features.shape == (batch, restorer.dim, *grid), (
        f"{name}: features must be float (B, dim, h, w) = {(batch, restorer.dim, *grid)}, got "
        f"{tuple(out.features.shape)}")
    (out.logits.logsumexp(1).mean() + out.features.square().mean()).backward()
    _assert_grad_reaches(x, name)
    restorer.eval()
    with torch.no_grad():
        out = restorer(x.detach())
        for fidelity in (0.0, 0.5, 1.0):
            latents = blend_codes(tokenizer, out, fidelity)
            assert latents.shape == (batch, restorer.dim, *grid), f"{name}: fidelity {fidelity} latents' shape"
            images = tokenizer.decode_codes(latents)
            assert images.shape == (batch, 3, size, size) and torch.isfinite(images).all(), (
                f"{name}: fidelity {fidelity} does not decode to finite images")
    check_round_trips(restorer, x.detach())


def check_condition(condition, batch: int = 2, size: int = 16) -> None:
    """A condition maps images (B, 3, H, W) in [-1, 1] to float (B, channels, H, W) in [-1, 1] of the same size
    (square or not), gives the same output for the same generator seed and ``sample`` the same for the same (seed,
    epoch, index), and its ``to_config()`` is JSON that rebuilds a condition giving the same output (its
    state_dict loaded, for one with weights)."""
    import json

    from .conditions.base import Condition, build_condition

    name = type(condition).__name__
    assert isinstance(condition, Condition), f"{name} must subclass vqstack.Condition"
    channels = condition.channels
    assert isinstance(channels, int) and not isinstance(channels, bool) and channels > 0, (
        f"{name}.channels must be a positive int, got {channels!r}")
    x = torch.rand(batch, 3, size, size + 8) * 2 - 1
    with torch.no_grad():
        out = condition(x, torch.Generator().manual_seed(0))
        again = condition(x, torch.Generator().manual_seed(0))
    expected = (batch, channels, size, size + 8)
    assert out.is_floating_point() and tuple(out.shape) == expected, (
        f"{name}: must return float (B, channels, H, W) = {expected}, got {out.dtype} {tuple(out.shape)}")
    assert torch.isfinite(out).all() and out.min() >= -1 and out.max() <= 1, f"{name}: output must lie in [-1, 1]"
    torch.testing.assert_close(again, out, msg=f"{name}: the same generator seed must give the same condition")
    with torch.no_grad():
        one = condition.sample(x[0], index=3, epoch=1, seed=5)
        one_again = condition.sample(x[0], index=3, epoch=1, seed=5)
    assert tuple(one.shape) == expected[1:], f"{name}: sample(image (3, H, W)) must return (channels, H, W)"
    torch.testing.assert_close(one_again, one, msg=f"{name}: sample() must be the same for the same (seed, epoch, "
                                                   f"index)")
    config = condition.to_config()
    assert json.loads(json.dumps(config)) == config, f"{name}: to_config() must survive JSON unchanged: {config}"
    twin = build_condition(config)
    twin.load_state_dict(condition.state_dict())
    with torch.no_grad():
        rebuilt = twin(x, torch.Generator().manual_seed(0))
    torch.testing.assert_close(rebuilt, out, msg=f"{name}: the condition rebuilt from to_config() differs")


CHECKS = {
    "quantizer": check_quantizer,
    "encoder": check_encoder,
    "decoder": check_decoder,
    "discriminator": check_discriminator,
    "perceptual": check_perceptual,
    "prior": check_prior,
    "features": check_features,
    "restorer": check_restorer,
    "condition": check_condition,
}


def check_component(kind: str, name: str, **overrides) -> None:
    """Build ``name`` with its example arguments (plus ``overrides``) and run the checks for its kind."""
    torch.manual_seed(0)
    component = build_example(kind, name, **overrides)
    if kind not in CHECKS:
        raise NotImplementedError(f"No conformance check for kind {kind!r} yet; checks exist for {sorted(CHECKS)}.")
    CHECKS[kind](component)


# Building with these errors means something this machine lacks (pretrained weights, an optional package), not a
# broken component: reported as skipped. vqstack's metric weights raise MissingWeightsError, a FileNotFoundError.
UNAVAILABLE = (FileNotFoundError, ModuleNotFoundError)


def unavailable(err: BaseException) -> bool:
    """Whether ``err`` says this machine lacks something; a component registered by reference whose module needs a
    package that is not installed fails to import as a ComponentImportError caused by a ModuleNotFoundError."""
    from .core.registry import ComponentImportError

    return isinstance(err, UNAVAILABLE) or (isinstance(err, ComponentImportError)
                                            and isinstance(err.__cause__, ModuleNotFoundError))


@dataclass
class CheckResult:
    """How the conformance check of one registered component went."""

    kind: str
    name: str
    plugin: str   # the plugin that registered it
    status: str   # "ok", "failed" or "skipped"
    reason: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def one_line(err: BaseException) -> str:
    """``Type: first line of the message``, for a report of one line per component."""
    first = (str(err).strip().splitlines() or [""])[0]
    return f"{type(err).__name__}: {first}".rstrip(": ")


def check_result(kind: str, name: str) -> CheckResult:
    """Run the check of one registered component and say how it went, without raising."""
    result = CheckResult(kind, name, registry(kind).owner(name), "ok")
    if kind not in CHECKS:
        result.status, result.reason = "skipped", f"no conformance check for kind {kind!r}"
        return result
    torch.manual_seed(0)
    try:
        component = build_example(kind, name)
    except Exception as err:
        if unavailable(err):
            result.status, result.reason = "skipped", f"cannot build here: {one_line(err)}"
        else:
            result.status, result.reason = "failed", f"cannot build with example_kwargs(): {one_line(err)}"
        return result
    try:
        CHECKS[kind](component)
    except Exception as err:  # AssertionError names the broken rule; anything else is a crash inside the check
        result.status, result.reason = "failed", one_line(err)
    return result


def check_registered(kinds=None) -> list[CheckResult]:
    """The checks of every registered component of ``kinds`` (default: every kind), one result per component."""
    return [check_result(kind, name) for kind in (kinds or KIND_HOOKS) for name in registry(kind).names()]
