"""The Tokenizer: the data flow, encode/decode, and saving by registry names."""
import json

import pytest
import torch

import vqstack
from vqstack.conformance import example_kwargs

TINY = {"ch": 16, "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [], "resolution": 16}


def tiny_config(quantizer="vq", **quantizer_kwargs):
    return {
        "encoder": {"name": "conv", "kwargs": {**TINY, "out_channels": 32}},
        "quantizer": {"name": quantizer, "kwargs": {**example_kwargs("quantizer", quantizer), **quantizer_kwargs}},
        "decoder": {"name": "conv", "kwargs": {**TINY, "in_channels": 32}},
    }


@pytest.fixture
def images():
    torch.manual_seed(0)
    return torch.rand(2, 3, 16, 16) * 2 - 1


@pytest.mark.parametrize("quantizer", vqstack.components("quantizer"))
def test_encode_decode_and_forward(quantizer, images):
    tok = vqstack.Tokenizer.from_config(tiny_config(quantizer))
    tokens = tok.encode(images)
    assert tokens.dtype == torch.long and tokens.shape[:3] == (2, 8, 8)
    decoded = tok.decode(tokens)
    assert decoded.shape == images.shape and decoded.abs().max() <= 1
    out = tok(images)
    assert isinstance(out, vqstack.TokenizerOutput)
    assert torch.equal(out.indices, tokens), "forward and encode pick the same tokens"
    (out.recon.square().mean() + out.loss).backward()
    assert tok.encoder.conv_in.weight.grad is not None, "gradient must reach the encoder through the quantizer"


def test_encode_never_updates_the_codebook(images):
    tok = vqstack.Tokenizer.from_config(tiny_config("ema"))
    tok.train()
    before = {k: v.clone() for k, v in tok.quantizer.state_dict().items()}
    tok.encode(images)
    after = tok.quantizer.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert tok.training and tok.quantizer.training, "encode restores the training mode"


def test_save_and_load_by_name_without_pickle(tmp_path, images):
    tok = vqstack.Tokenizer.from_config(tiny_config("fsq")).eval()
    tok.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["quantizer"]["name"] == "fsq" and config["encoder"]["kwargs"]["ch"] == 16
    loaded = vqstack.Tokenizer.from_pretrained(tmp_path)
    torch.testing.assert_close(loaded.decode(loaded.encode(images)), tok.decode(tok.encode(images)))


def test_plugin_components_save_and_load_by_name(fresh_plugins, tmp_path, images):
    from vqstack.quantizers import FSQ

    class Plugin:
        @vqstack.hookimpl
        def vqstack_register_quantizers(self, registry):
            registry.register("plugin-fsq", FSQ)

    vqstack.register_plugin(Plugin(), name="plugin")
    tok = vqstack.Tokenizer.from_config(tiny_config("plugin-fsq"))
    tok.save_pretrained(tmp_path)
    assert vqstack.Tokenizer.from_pretrained(tmp_path).quantizer.codebook_size == tok.quantizer.codebook_size
    vqstack.unregister_plugin("plugin")
    with pytest.raises(vqstack.UnknownComponentError, match="Unknown quantizer 'plugin-fsq'"):
        vqstack.Tokenizer.from_pretrained(tmp_path)


def test_parts_not_built_by_name_cannot_be_saved(tmp_path):
    from vqstack.quantizers import VectorQuantizer

    tok = vqstack.Tokenizer.from_config(tiny_config("vq"))
    tok.quantizer = VectorQuantizer(dim=tok.quantizer.dim, codebook_size=16)
    with pytest.raises(ValueError, match="quantizer .* was not made by vqstack.build"):
        tok.save_pretrained(tmp_path)


def test_mismatched_factors_are_refused():
    config = tiny_config()
    config["decoder"]["kwargs"]["ch_mult"] = [1, 2, 2]
    with pytest.raises(ValueError, match="downsamples by 2 but the decoder upsamples by 4"):
        vqstack.Tokenizer.from_config(config)


def test_config_missing_a_part_is_refused():
    with pytest.raises(ValueError, match="lacks 'decoder'"):
        vqstack.Tokenizer.from_config({"encoder": "conv", "quantizer": "vq"})


# --- colour whitening ------------------------------------------------------------------------------------------


def test_colour_whitening_balances_every_axis_and_inverts():
    from vqstack.autoencoders.colour import ColourWhitening

    torch.manual_seed(0)
    grey = torch.rand(8, 1, 8, 8) * 2 - 1
    images = torch.cat([grey, grey * 0.9 + 0.1 * torch.randn(8, 1, 8, 8), grey + 0.2 * torch.randn(8, 1, 8, 8)], 1)
    whitening = ColourWhitening.from_images(images)
    pixels = whitening(images).permute(0, 2, 3, 1).reshape(-1, 3)
    assert torch.allclose(torch.cov(pixels.T), torch.eye(3), atol=0.02)  # the weak axes now count as much
    assert torch.allclose(whitening.inverse(whitening(images)), images, atol=1e-5)


def test_a_whitened_tokenizer_saves_its_colours_and_decodes_to_rgb(tmp_path, images):
    from vqstack.autoencoders.colour import ColourWhitening

    colour = ColourWhitening.from_images(images).config
    tok = vqstack.Tokenizer.from_config({**tiny_config(), "colour": colour})
    tok.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["colour"] == colour
    loaded = vqstack.Tokenizer.from_pretrained(tmp_path)
    assert torch.equal(loaded.decode(loaded.encode(images)), tok.decode(tok.encode(images)))
    # the decoder's output goes back through the inverse: a zero decoder output decodes to the mean colour
    with torch.no_grad():
        tok.decoder.conv_out.weight.zero_(), tok.decoder.conv_out.bias.zero_()
        assert torch.allclose(tok.decode_codes(tok.post_quant_proj.weight.new_zeros(1, tok.quantizer.dim, 8, 8))
                              [0, :, 0, 0], tok.colour.mean)


def test_whiten_must_be_measured_before_building():
    with pytest.raises(ValueError, match="'whiten'.*colour statistics"):
        vqstack.Tokenizer.from_config({**tiny_config(), "colour": "whiten"})


# --- decode refuses tokens it cannot decode ----------------------------------------------------------------------


@pytest.mark.parametrize("quantizer,shape", [("vq", r"\(B, h, w\)"), ("residual", r"\(B, h, w, 3\)")])
def test_decode_names_the_valid_tokens_when_given_others(quantizer, shape, images):
    tok = vqstack.Tokenizer.from_config(tiny_config(quantizer))
    tokens = tok.encode(images)
    size = tok.quantizer.codebook_size
    expected = (rf"Tokenizer.decode expects long \(torch.int64\) tokens of shape {shape} with values in "
                rf"0..{size - 1} \(codebook_size {size}\); got ")
    negative, too_large = tokens.clone(), tokens.clone()
    negative.view(-1)[0], too_large.view(-1)[-1] = -3, size
    cases = [
        (negative, r"torch.int64 tokens .* with min -3 and max \d+\.$"),
        (too_large, rf"torch.int64 tokens .* with min \d+ and max {size}\.$"),
        (tokens.float(), r"torch.float32 tokens of shape"),
        (tokens[0], r"torch.int64 tokens of shape \(8, 8(, 3)?\)"),
        (tokens.unsqueeze(-1), r"torch.int64 tokens of shape"),
        (tokens.tolist(), r"a list\.$"),
    ]
    for bad, got in cases:
        with pytest.raises(ValueError, match=expected + got):
            tok.decode(bad)
    assert tok.decode(tokens).shape == images.shape  # the valid ones still decode
