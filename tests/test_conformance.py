"""Every registered component of every kind passes the public contract's checks (vqstack.conformance).

A component is checked the moment it registers, plugins included."""
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import vqstack
from vqstack.api import Prior, PriorOutput, build_example, process_logits, sample_from_logits
from vqstack.priors import build_prior, generate_options, prior_arguments
from vqstack.conformance import CHECKS, check_component, check_result

CASES = [(kind, name) for kind in CHECKS for name in vqstack.components(kind)]


@pytest.mark.parametrize("kind,name", CASES, ids=[f"{k}-{n}" for k, n in CASES])
def test_component_conforms(kind, name):
    check_component(kind, name)


@pytest.mark.parametrize("name", vqstack.components("quantizer"))
def test_quantizer_builds_from_dim_alone(name):
    q = vqstack.build("quantizer", name, dim=12)
    assert q.dim == 12 and q.codebook_size > 1


@pytest.mark.parametrize("kind", ["encoder", "decoder", "discriminator"])
def test_networks_build_with_defaults(kind):
    for name in vqstack.components(kind):
        vqstack.build(kind, name)


def test_a_broken_quantizer_fails_the_checks():
    """The checks catch a quantizer whose indices do not decode to its output."""
    from vqstack.quantizers import VectorQuantizer

    class OffByOne(VectorQuantizer):
        def indices_to_codes(self, indices):
            return super().indices_to_codes((indices + 1) % self.codebook_size)

    with pytest.raises(AssertionError, match="indices_to_codes"):
        CHECKS["quantizer"](OffByOne(dim=8, codebook_size=16))


def test_a_prior_whose_generate_lacks_arguments_is_named():
    """A plugin prior must take generate()'s contract arguments by name: the check names the missing ones."""
    prior = build_example("prior", "ar")

    def generate(n, labels=None, cfg_scale=1.0):  # no temperature, top_k, top_p, generator
        return torch.zeros(n, prior.seq_len, dtype=torch.long)

    prior.generate = generate
    with pytest.raises(AssertionError, match="generate.. lacks temperature, top_k, top_p, generator"):
        CHECKS["prior"](prior)


# --- a plugin's prior with sizes of its own, as the prior recipe and the pipeline use it -----------------------------

RECIPE = {"vocab_size": 32, "seq_len": 16, "dim": 512, "depth": 8, "heads": 8, "cond_dropout": 0.1}  # the recipe's


class TablePrior(Prior):
    """A plugin's prior with its own size (``width``) and none of ar's (dim, depth, heads): each position's logits
    come from the condition alone. No guidance; ``known=`` kept."""

    def __init__(self, vocab_size, seq_len, num_classes=0, class_names=None, attributes=None, cond_dropout=0.1,
                 group_dropout=0.1, width=8):
        super().__init__()
        self.init_conditions(vocab_size, seq_len, num_classes, class_names, attributes, cond_dropout, group_dropout)
        self.width = width
        self.embed = nn.Embedding(vocab_size + self.conditions.num_tokens, width)
        self.positions = nn.Parameter(torch.randn(seq_len, width))
        self.head = nn.Linear(width, vocab_size)

    def logits(self, prefix):
        return self.head(self.embed(prefix).mean(1, keepdim=True) + self.positions)

    def forward(self, tokens, labels=None):
        tokens = self.check_tokens(tokens)
        self.check_range(tokens)
        prefix = self.condition_tokens(labels, tokens.shape[0])
        if self.training and self.conditions.is_conditional:
            prefix = self.drop_conditions(prefix)
        logits = self.logits(prefix)
        return PriorOutput(F.cross_entropy(logits.flatten(0, 1), tokens.flatten()), logits)

    @torch.no_grad()
    def generate(self, n, labels=None, cfg_scale=1.0, temperature=1.0, top_k=None, top_p=None, generator=None,
                 known=None):
        logits = process_logits(self.logits(self.condition_tokens(labels, n)).flatten(0, 1), self.vocab_size,
                                None, temperature, top_k, top_p)
        tokens = sample_from_logits(logits, generator, greedy=temperature == 0).view(n, self.seq_len)
        return tokens if known is None else torch.where(self.check_known(known, n) >= 0, known, tokens)


class NeedsDepth(TablePrior):
    """Requires a size of its own that no recipe gives; its example_kwargs give it, so it builds for the checks."""

    def __init__(self, vocab_size, seq_len, layers, num_classes=0, class_names=None, attributes=None):
        super().__init__(vocab_size, seq_len, num_classes, class_names, attributes)
        self.layers = layers

    @classmethod
    def example_kwargs(cls):
        return {"vocab_size": 32, "seq_len": 16, "layers": 2}


class NoAttributes(TablePrior):
    def __init__(self, vocab_size, seq_len, num_classes=0, class_names=None):
        super().__init__(vocab_size, seq_len, num_classes, class_names)


class IgnoresConditions(TablePrior):
    """Takes anything (**kwargs) and builds an unconditional prior whatever it is given."""

    def __init__(self, vocab_size, seq_len, **kwargs):
        super().__init__(vocab_size, seq_len)


class NoKnown(TablePrior):
    def generate(self, n, labels=None, cfg_scale=1.0, temperature=1.0, top_k=None, top_p=None, generator=None):
        return super().generate(n, labels, cfg_scale, temperature, top_k, top_p, generator)


class ChangesKnown(TablePrior):
    def generate(self, n, labels=None, cfg_scale=1.0, temperature=1.0, top_k=None, top_p=None, generator=None,
                 known=None):
        return super().generate(n, labels, cfg_scale, temperature, top_k, top_p, generator)  # drops known


def example(factory):
    """``factory`` with TablePrior's example sizes unless it has its own."""
    if "example_kwargs" not in vars(factory):
        factory.example_kwargs = classmethod(lambda cls: {"vocab_size": 32, "seq_len": 16, "num_classes": 3})
    return factory


class PriorPlugin:
    @vqstack.hookimpl
    def vqstack_register_priors(self, registry):
        for name, factory in {"table": TablePrior, "needs-depth": NeedsDepth, "no-attributes": NoAttributes,
                              "ignores-conditions": IgnoresConditions, "no-known": NoKnown,
                              "changes-known": ChangesKnown}.items():
            registry.register(name, example(factory))


@pytest.fixture
def prior_plugin(fresh_plugins):
    vqstack.register_plugin(PriorPlugin(), name="test-priors")
    yield
    vqstack.unregister_plugin("test-priors")


def test_build_prior_passes_only_the_arguments_a_prior_takes(prior_plugin):
    attributes = {"hair": ["blue", "red"]}
    assert prior_arguments("table", **RECIPE, attributes=attributes) == {
        "vocab_size": 32, "seq_len": 16, "cond_dropout": 0.1, "attributes": attributes}  # no dim, depth, heads
    prior = build_prior("table", **RECIPE, attributes=attributes, group_dropout=0.3)
    assert (prior.width, prior.conditions.mode, prior.group_dropout) == (8, "attributes", 0.3)
    ar = build_prior("ar", **{**RECIPE, "dim": 32, "depth": 1, "heads": 2}, num_classes=2)
    assert (ar.config.hidden_size, ar.config.num_hidden_layers, ar.num_classes) == (32, 1, 2)
    assert prior_arguments("ignores-conditions", **RECIPE) == RECIPE  # **kwargs takes everything
    # a condition left at "none" may be dropped: leaving it out means the same
    assert prior_arguments("no-attributes", **RECIPE, num_classes=0, attributes=None) == {
        "vocab_size": 32, "seq_len": 16, "num_classes": 0}


@pytest.mark.parametrize("name, arguments, message", [
    ("needs-depth", {}, r"prior 'needs-depth' requires layers, which the recipe does not give \(it gives vocab_size, "
                        r"seq_len, dim, depth, heads, cond_dropout\): give it a default in the prior's constructor\."),
    ("no-attributes", {"attributes": {"hair": ["blue"]}},
     r"prior 'no-attributes' does not take attributes, which this run sets \(attributes=\{'hair': \['blue'\]\}\); "
     r"it takes: vocab_size, seq_len, num_classes, class_names\."),
])
def test_build_prior_names_what_a_prior_lacks_in_one_line(prior_plugin, name, arguments, message):
    with pytest.raises(ValueError, match=f"^{message}$") as err:
        build_prior(name, **RECIPE, **arguments)
    assert "\n" not in str(err.value)


def test_a_prior_with_its_own_sizes_passes_the_checks(prior_plugin):
    check_component("prior", "table")
    check_component("prior", "no-known")  # known= is optional


@pytest.mark.parametrize("name, message", [
    ("needs-depth", "needs-depth: the prior recipe cannot build it (unconditional run): ValueError: prior "
                    "'needs-depth' requires layers"),
    ("no-attributes", "no-attributes: the prior recipe cannot build it (attributes run): ValueError: prior "
                      "'no-attributes' does not take attributes"),
    ("ignores-conditions", "ignores-conditions: built with {'num_classes': 2, 'class_names': ['cat', 'dog']} it must "
                           "be class, got unconditional"),
    ("changes-known", "ChangesKnown: generate(known=...) must keep the known tokens"),
])
def test_a_prior_the_recipe_cannot_train_fails_the_checks(prior_plugin, name, message):
    """Before, each of these passed `vqstack plugins --check` and then failed in the recipe (or the pipeline)."""
    with pytest.raises(AssertionError) as err:
        check_component("prior", name)
    assert message in str(err.value)
    result = check_result("prior", name)
    assert result.status == "failed" and message in result.reason


def test_generate_options_refuses_in_one_line_what_generate_does_not_take(prior_plugin):
    known = torch.full((1, 16), -1)
    assert generate_options(build_example("prior", "table"), known=known, steps=None) == {"known": known}
    with pytest.raises(ValueError, match=r"^known= keeps an image's tokens \(-1 where to sample\), which inpainting "
                                         r"and outpainting need; NoKnown.generate\(\) does not take it: use a prior "
                                         r"that does \(ar, maskgit\)\.$"):
        generate_options(build_example("prior", "no-known"), known=known)
    with pytest.raises(ValueError, match=r"^steps=8 sets the decoding passes of a parallel-decoding prior "
                                         r"\(maskgit\); this prior \(ARPrior\) samples one token per pass: drop "
                                         r"steps\.$"):
        generate_options(build_example("prior", "ar"), known=known, steps=8)
    assert generate_options(build_example("prior", "ar"), known=None, steps=None) == {}
