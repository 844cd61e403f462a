"""Operator mistakes stop at load time with one message naming the problem and the valid choice: a prior used with
another tokenizer, a multi-codebook tokenizer given to a prior, swapped folders."""
import json

import pytest
import torch

import vqstack
from helpers.recipes import TINY_NET, tiny_tokenizer_config
from vqstack.cli import main as cli_main
from vqstack.core.serialization import weights_sha256
from vqstack.data.tokens import check_single_codebook
from vqstack import Pipeline

RESIDUAL = {"name": "residual", "kwargs": {"dim": 8, "num_quantizers": 2, "codebook_size": 32}}
FACTOR_2 = {**TINY_NET, "ch_mult": [1, 2]}  # downsamples by 2, not 4


def save_tokenizer(directory, quantizer=None, net=None):
    config = tiny_tokenizer_config(quantizer)
    if net is not None:
        config["encoder"]["kwargs"].update(net)
        config["decoder"]["kwargs"].update(net)
    torch.manual_seed(0)
    vqstack.Tokenizer.from_config(config).save_pretrained(directory)
    return directory


def save_prior(directory, vocab_size=32, seq_len=16, info=None):
    prior = vqstack.build("prior", "ar", vocab_size=vocab_size, seq_len=seq_len, dim=32, depth=1, heads=2)
    vqstack.save_component(prior, directory)
    if info is not None:
        (directory / "tokens_info.json").write_text(json.dumps(info))
    return directory


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A 16x16 -> 4x4 tokenizer with 32 codes and a prior trained (as its tokens_info.json says) on its tokens."""
    root = tmp_path_factory.mktemp("mistakes")
    tokenizer = save_tokenizer(root / "tokenizer")
    save_prior(root / "prior", info={"grid": [4, 4], "codebook_size": 32, "resolution": 16,
                                     "tokenizer_sha256": weights_sha256(tokenizer), "tokenizer_path": str(tokenizer)})
    return root


def test_the_matching_pair_loads(root):
    pipe = Pipeline.from_pretrained(root / "tokenizer", root / "prior")
    assert pipe.grid == (4, 4) and pipe.image_size == (16, 16)


def test_a_prior_of_another_codebook_size_names_both_folders_and_sizes(root, tmp_path):
    prior = save_prior(tmp_path / "prior64", vocab_size=64, info={"grid": [4, 4], "resolution": 16,
                                                                   "tokenizer_path": "runs/big/tokenizer"})
    with pytest.raises(ValueError) as err:
        Pipeline.from_pretrained(root / "tokenizer", prior)
    assert str(err.value) == (f"The prior in {prior} models 64 token values but the tokenizer in {root / 'tokenizer'} "
                              f"has 32 codes: use the tokenizer the prior was trained with (runs/big/tokenizer).")


def test_a_prior_of_another_downsampling_is_refused(root, tmp_path):
    """Same codebook size, but the prior learnt 4x4 grids of 16x16 images and this tokenizer downsamples by 2."""
    tokenizer = save_tokenizer(tmp_path / "tokenizer-f2", net=FACTOR_2)
    with pytest.raises(ValueError, match=r"The prior in .*prior was trained on 4x4 token grids of 16x16 images "
                                         r"\(downsampling by 4\), but the tokenizer in .*tokenizer-f2 downsamples "
                                         r"by 2"):
        Pipeline.from_pretrained(tokenizer, root / "prior")


def test_a_prior_whose_length_is_no_grid_is_refused(root, tmp_path):
    prior = save_prior(tmp_path / "prior15", seq_len=15)
    with pytest.raises(ValueError, match=rf"The prior in {prior} models 15 tokens per image, not a square grid, "
                                         rf"and records no grid: pass grid=\(h, w\)"):
        Pipeline.from_pretrained(root / "tokenizer", prior)
    with pytest.raises(ValueError, match=r"records a 4x4 token grid but the prior in .* models seq_len=15"):
        Pipeline.from_pretrained(root / "tokenizer", save_prior(tmp_path / "mixed", seq_len=15, info={"grid": [4, 4]}))


def test_a_recorded_grid_that_is_not_square_is_used(root, tmp_path):
    pipe = Pipeline.from_pretrained(root / "tokenizer", save_prior(tmp_path / "wide", info={"grid": [2, 8]}))
    assert pipe.grid == (2, 8) and pipe.image_size == (8, 32)
    assert pipe(1, seed=0)[0].size == (32, 8)


def test_a_retrained_tokenizer_of_the_same_shapes_only_warns(root, tmp_path):
    prior = save_prior(tmp_path / "prior", info={"grid": [4, 4], "resolution": 16, "tokenizer_sha256": "0" * 64})
    with pytest.warns(UserWarning, match="trained on the tokens of another tokenizer"):
        Pipeline.from_pretrained(root / "tokenizer", prior)


def test_a_multi_codebook_tokenizer_is_refused_by_the_pipeline(root, tmp_path):
    tokenizer = save_tokenizer(tmp_path / "residual", RESIDUAL)
    with pytest.raises(ValueError, match=rf"The quantizer of the tokenizer in {tokenizer} \(ResidualVQ\) gives "
                                         rf"several tokens per position \(2 codebooks\); the prior models one\. "
                                         rf"Train the tokenizer with a single-codebook quantizer"):
        Pipeline.from_pretrained(tokenizer, root / "prior")
    with pytest.raises(ValueError, match="several tokens per position"):
        Pipeline(vqstack.Tokenizer.from_pretrained(tokenizer), vqstack.load_component(root / "prior"))


def test_check_single_codebook_passes_a_single_codebook(root):
    check_single_codebook(vqstack.Tokenizer.from_pretrained(root / "tokenizer"))
    with pytest.raises(ValueError, match="The quantizer of the tokenizer \\(ResidualVQ\\)"):
        check_single_codebook(vqstack.Tokenizer.from_config(tiny_tokenizer_config(RESIDUAL)))


def test_swapped_folders_are_named(root):
    with pytest.raises(ValueError, match=rf"{root / 'prior'} holds a prior \('ar'\), not a tokenizer.*swapped"):
        Pipeline.from_pretrained(root / "prior", root / "tokenizer")
    with pytest.raises(ValueError, match=rf"{root / 'tokenizer'}/config.json describes a tokenizer"):
        Pipeline.from_pretrained(root / "tokenizer", root / "tokenizer")


def test_a_component_of_another_kind_is_not_a_prior(root, tmp_path):
    vqstack.save_component(vqstack.build("quantizer", "vq", dim=8, codebook_size=32), tmp_path / "vq")
    with pytest.raises(ValueError, match=rf"{tmp_path / 'vq'} holds a quantizer \('vq'\), not a prior"):
        Pipeline.from_pretrained(root / "tokenizer", tmp_path / "vq")


@pytest.mark.parametrize("command", ["sample", "inpaint"])
def test_cli_reports_a_mismatched_pair_in_one_line(root, tmp_path, capsys, command):
    from PIL import Image

    prior = save_prior(tmp_path / "prior64", vocab_size=64)
    extra = ["--n", "1"] if command == "sample" else ["--image", str(tmp_path / "in.png"), "--mask",
                                                      str(tmp_path / "in.png")]
    Image.new("RGB", (16, 16), "white").save(tmp_path / "in.png")
    assert cli_main([command, "--tokenizer", str(root / "tokenizer"), "--prior", str(prior), *extra,
                     "--out", str(tmp_path / "out.png"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"vqstack {command}: error: The prior in {prior} models 64 token values but the tokenizer in "
                   f"{root / 'tokenizer'} has 32 codes: use the tokenizer the prior was trained with.")
    assert not (tmp_path / "out.png").exists()
