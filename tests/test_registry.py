"""The registry: names, builds that remember their spec, and the errors users meet."""
import pytest
import torch

import vqstack
from vqstack.core.registry import Registry

BUILTINS = {
    "encoder": {"conv"},
    "decoder": {"conv"},
    "quantizer": {"vq", "ema", "fsq", "lfq", "residual"},
    "discriminator": {"patchgan", "stylegan"},
    "perceptual": {"lpips", "stlpips"},
    "condition": {"lineart", "grayscale", "lowres"},
}


@pytest.mark.parametrize("kind", sorted(BUILTINS))
def test_builtins_are_registered_and_sorted(kind):
    names = vqstack.components(kind)
    assert BUILTINS[kind] <= set(names)
    assert names == sorted(names)


def test_unknown_name_lists_registered_and_suggests():
    with pytest.raises(vqstack.UnknownComponentError) as err:
        vqstack.build("quantizer", "residul", dim=8)
    message = str(err.value)
    assert "Unknown quantizer 'residul'" in message
    assert all(name in message for name in BUILTINS["quantizer"])
    assert "Did you mean 'residual'?" in message


def test_unknown_kind_lists_kinds():
    with pytest.raises(vqstack.UnknownComponentError, match="Kinds: encoder, decoder, quantizer"):
        vqstack.components("quantiser")


def test_duplicate_name_fails_naming_both_plugins():
    reg = Registry("quantizer")
    reg._current_owner = "first"
    reg.register("x", torch.nn.Identity)
    reg._current_owner = "second"
    with pytest.raises(vqstack.DuplicateComponentError, match="'first' and by plugin 'second'"):
        reg.register("x", torch.nn.Identity)


def test_build_remembers_name_and_arguments():
    q = vqstack.build("quantizer", "vq", dim=8, codebook_size=32)
    assert vqstack.component_spec(q) == {"kind": "quantizer", "name": "vq",
                                         "kwargs": {"dim": 8, "codebook_size": 32}}


def test_bad_arguments_name_the_accepted_ones():
    with pytest.raises(TypeError, match="Cannot build quantizer 'vq'.*accepts: .*codebook_size"):
        vqstack.build("quantizer", "vq", dim=8, codebok_size=32)
