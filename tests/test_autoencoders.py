"""The taming-style conv Encoder / Decoder: shapes, attention placement, gradients, last_layer, clear errors."""
import pytest
import torch

import vqstack
from vqstack.autoencoders import AttnBlock, Decoder, Encoder
from vqstack.autoencoders.blocks import group_count

TINY = Encoder.example_kwargs()
F4 = {"ch": 16, "ch_mult": (1, 2, 2), "num_res_blocks": 1, "attn_resolutions": (8,), "resolution": 32}


def pair(**kwargs):
    """A matching encoder and decoder with 8 feature channels between them."""
    shared = {k: v for k, v in kwargs.items() if k not in ("in_channels", "out_channels")}
    enc = Encoder(**shared, out_channels=8)
    dec = Decoder(**shared, in_channels=8)
    return enc, dec


@pytest.mark.parametrize("size", [32, 64, 96])
@pytest.mark.parametrize("config", [TINY, F4], ids=["f2", "f4"])
def test_shapes_for_several_resolutions(config, size):
    enc, dec = pair(**config)
    f = enc.downsample
    assert f == dec.upsample == 2 ** (len(config["ch_mult"]) - 1)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        z = enc(x)
        assert z.shape == (2, enc.out_channels, size // f, size // f)
        assert dec(z).shape == (2, 3, size, size)


def test_defaults_are_taming_f16():
    enc, dec = Encoder(), Decoder()
    assert (enc.downsample, dec.upsample, enc.out_channels, dec.in_channels) == (16, 16, 256, 256)
    # taming's state-dict layout: attention at the 16x16 level (level 4 of 5) and in the middle
    enc_keys, dec_keys = set(enc.state_dict()), set(dec.state_dict())
    assert {"conv_in.weight", "down.4.attn.1.q.weight", "down.0.downsample.conv.weight", "mid.attn_1.k.weight",
            "down.2.block.0.nin_shortcut.weight",
            "norm_out.weight", "conv_out.weight"} <= enc_keys
    assert "down.3.attn.0.q.weight" not in enc_keys
    assert {"up.4.attn.2.proj_out.weight", "up.1.upsample.conv.weight", "up.0.block.2.conv2.weight",
            "mid.block_2.norm1.weight"} <= dec_keys
    assert "up.0.upsample.conv.weight" not in dec_keys  # the full-resolution level does not upsample


def test_attention_runs_where_configured():
    """attn_resolutions are feature sizes for an input of `resolution` (taming's convention), in both networks."""
    enc, dec = Encoder(**TINY), Decoder(**Decoder.example_kwargs())
    # TINY: resolution 32, levels of 32 and 16 pixels, attention at 16 -> level 1, plus the middle block
    assert len(enc.down[1].attn) == 1 and len(enc.down[0].attn) == 0 and isinstance(enc.mid.attn_1, AttnBlock)
    assert len(dec.up[1].attn) == 2 and len(dec.up[0].attn) == 0  # decoder: num_res_blocks + 1 blocks per level
    calls = []
    for m in [*enc.modules(), *dec.modules()]:
        if isinstance(m, AttnBlock):
            m.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        dec(enc(torch.randn(1, 3, 32, 32)))
    assert len(calls) == 1 + 1 + 2 + 1
    no_mid = Encoder(**{**TINY, "attn_resolutions": [], "mid_attention": False})
    assert not any(isinstance(m, AttnBlock) for m in no_mid.modules())


def test_attention_matches_naive_softmax_attention():
    block = AttnBlock(8)
    x = torch.randn(2, 8, 3, 5)
    with torch.no_grad():
        h = block.norm(x)
        q, k, v = (t.flatten(2) for t in (block.q(h), block.k(h), block.v(h)))  # (B, C, N)
        w = torch.softmax(q.transpose(1, 2) @ k / 8 ** 0.5, dim=-1)  # (B, N, N), taming's formula
        expected = x + block.proj_out((v @ w.transpose(1, 2)).reshape(x.shape))
        torch.testing.assert_close(block(x), expected, atol=1e-5, rtol=1e-5)


def test_gradients_reach_input_and_every_parameter():
    enc, dec = pair(**TINY)
    x = torch.randn(2, 3, 32, 32, requires_grad=True)
    dec(enc(x)).square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in [*enc.named_parameters(), *dec.named_parameters()]:
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_last_layer_is_the_weight_the_output_depends_on():
    dec = Decoder(**Decoder.example_kwargs())
    assert dec.last_layer is dec.conv_out.weight
    assert any(dec.last_layer is p for p in dec.parameters())
    z = torch.randn(2, dec.in_channels, 4, 4)
    out = dec(z)
    grad, = torch.autograd.grad(out.square().sum(), dec.last_layer)
    assert grad.abs().sum() > 0
    with torch.no_grad():
        dec.last_layer.zero_()
        torch.testing.assert_close(dec(z), dec.conv_out.bias.view(1, -1, 1, 1).expand_as(out))


def test_configs_from_json_lists_and_registry():
    kwargs = {"ch": 16, "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [16], "resolution": 32}
    enc = vqstack.build("encoder", "conv", **kwargs, out_channels=4)
    dec = vqstack.build("decoder", "conv", **kwargs, in_channels=4)
    assert enc.downsample == dec.upsample == 2
    assert type(enc) is Encoder and type(dec) is Decoder


def test_small_channel_counts_get_fewer_groups():
    assert [group_count(c) for c in (256, 64, 48, 24, 16, 6, 1)] == [32, 32, 24, 24, 16, 6, 1]
    enc = Encoder(ch=24, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(), resolution=16, out_channels=4)
    assert enc(torch.randn(1, 3, 16, 16)).shape == (1, 4, 8, 8)


def test_norm_groups_sets_every_group_norm():
    enc, dec = pair(**F4, norm_groups=1)
    norms = [m for m in [*enc.modules(), *dec.modules()] if isinstance(m, torch.nn.GroupNorm)]
    assert norms and all(m.num_groups == 1 for m in norms)
    default = [m.num_groups for m in pair(**F4)[0].modules() if isinstance(m, torch.nn.GroupNorm)]
    assert set(default) == {16, 32}  # taming's 32 where the channels allow it


def test_one_channel_groups_cannot_pass_a_colour_cast_but_one_group_can():
    """Why the tiny presets use norm_groups=1: GroupNorm with one channel per group (32 groups of 32 channels) is
    InstanceNorm, which removes each channel's per-image mean. A uniform colour cast then never reaches conv_out."""
    torch.manual_seed(0)
    features = torch.randn(1, 32, 8, 8)
    cast = features + torch.linspace(-1, 1, 32).view(1, 32, 1, 1)  # every channel shifted by its own amount
    instance, layer = torch.nn.GroupNorm(32, 32, affine=False), torch.nn.GroupNorm(1, 32, affine=False)
    assert torch.allclose(instance(features), instance(cast), atol=1e-5)
    assert not torch.allclose(layer(features), layer(cast), atol=1e-2)


@pytest.mark.parametrize("kwargs,match", [
    ({"ch_mult": []}, "ch_mult is empty"),
    ({"resolution": 100}, "not divisible by the down/upsampling factor 16"),
    ({"resolution": 96}, r"match no level.*\[96, 48, 24, 12, 6\]"),
    ({"num_res_blocks": 0}, "num_res_blocks must be >= 1"),
])
def test_bad_configs_fail_clearly(kwargs, match):
    for cls in (Encoder, Decoder):
        with pytest.raises(ValueError, match=match):
            cls(**kwargs)


def test_input_not_divisible_by_the_factor_fails_clearly():
    enc = Encoder(**F4)
    with pytest.raises(ValueError, match="not divisible by the factor 4"):
        enc(torch.randn(1, 3, 30, 32))
