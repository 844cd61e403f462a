"""Every registered component of every kind passes the public contract's checks (vqstack.testing).

A component is checked the moment it registers, plugins included."""
import pytest
import torch

import vqstack
from vqstack.testing import CHECKS, check_component

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
    from vqstack.api import build_example

    prior = build_example("prior", "ar")

    def generate(n, labels=None, cfg_scale=1.0):  # no temperature, top_k, top_p, generator
        return torch.zeros(n, prior.seq_len, dtype=torch.long)

    prior.generate = generate
    with pytest.raises(AssertionError, match="generate.. lacks temperature, top_k, top_p, generator"):
        CHECKS["prior"](prior)
