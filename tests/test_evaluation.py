"""vqstack.evaluation: each metric against a known answer.

Networks called STAND-IN are tiny or random networks that exercise a code path (FID's, LPIPS's) or give an exact
answer (an image's mean colour as its "features"); their values are not the metric they stand in for."""
import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torchmetrics.functional.image import structural_similarity_index_measure

import vqstack
from helpers.recipes import SHARED_DATA, tiny_tokenizer_config
from vqstack.evaluation import (CodebookUsage, FeatureNetwork, MissingWeightsError, PrecisionRecall,
                                VGG16STLPIPSFeatures, build_suite, evaluate_tokenizer, parse_metrics, token_nll)
from vqstack.evaluation.generation import chunk_seed, labels_for, sample_images, sequence_labels
from vqstack.evaluation.reconstruction import tokenizer_suite


class MeanColour(FeatureNetwork):
    """STAND-IN features: each image's mean colour (B, 3). Gives Fréchet distances with exact answers; not a metric
    network."""

    num_features = 3
    description = "TEST STAND-IN: mean colour of each image, not a real metric network"

    def forward(self, images):
        return images.float().mean((2, 3))


def smooth_images(n, size=16, seed=0, spread=0.5):
    """``n`` smooth random images with values in [-spread, spread]."""
    low = (torch.rand(n, 3, 4, 4, generator=torch.Generator().manual_seed(seed)) * 2 - 1) * spread
    return nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)


# --- PSNR, SSIM -----------------------------------------------------------------------------------------------------


def test_psnr_of_a_constant_offset_is_known():
    """|error| = 0.1 everywhere with data range 2: PSNR = 10 log10(2² / 0.1²) = 26.0206 dB."""
    real = smooth_images(4)
    suite = build_suite(["psnr"])
    suite.update_pairs(real + 0.1, real)
    assert suite.compute()["psnr"] == pytest.approx(10 * math.log10(4 / 0.01), abs=1e-3)


def test_psnr_averages_per_image_values_over_batches():
    """Offsets 0.1 and 0.2 in two batches: the mean of 26.02 and 20.00 dB, not the PSNR of the pooled error."""
    real = smooth_images(2)
    suite = build_suite(["psnr"])
    suite.update_pairs(real[:1] + 0.1, real[:1])
    suite.update_pairs(real[1:] + 0.2, real[1:])
    expected = (10 * math.log10(4 / 0.01) + 10 * math.log10(4 / 0.04)) / 2
    assert suite.compute()["psnr"] == pytest.approx(expected, abs=1e-3)


def ssim_of(fake, real) -> float:
    """The suite's SSIM of [-1, 1] images."""
    suite = build_suite(["ssim"])
    suite.update_pairs(fake, real)
    return suite.compute()["ssim"]


def test_ssim_of_a_brightened_dark_image_is_the_fields():
    """A flat image at 0.05 (on [0, 1]) brightened to 0.15: every window has no variance, so SSIM is the luminance
    term with C1 = (0.01 * 1)²: (2 * 0.05 * 0.15 + C1) / (0.05² + 0.15² + C1) = 0.6016. On [-1, 1] with data range 2
    (-0.9 against -0.7) the same images scored 0.969: the shift hid the error."""
    dark = torch.full((2, 3, 32, 32), 0.05 * 2 - 1)
    c1 = 0.01 ** 2
    expected = (2 * 0.05 * 0.15 + c1) / (0.05 ** 2 + 0.15 ** 2 + c1)
    assert ssim_of(dark + 0.1 * 2, dark) == pytest.approx(expected, abs=1e-4)
    assert expected == pytest.approx(0.6016, abs=1e-4)


FACES = SHARED_DATA / "anime-faces"


def real_faces(n: int) -> torch.Tensor:
    """The first ``n`` anime faces (96x96) as floats in [0, 1]."""
    files = sorted(FACES.glob("*.jpg"))[:n]
    return torch.stack([torch.from_numpy(np.array(Image.open(f).convert("RGB"))).permute(2, 0, 1) for f in files]) / 255


@pytest.mark.skipif(not FACES.is_dir(), reason="../shared/data/anime-faces is absent")
def test_ssim_of_real_faces_is_torchmetrics_on_0_1_with_data_range_1():
    """16 real faces against a blurred and brightened copy, fed as [-1, 1] images in two batches: the value is
    torchmetrics' functional SSIM of the [0, 1] images with data range 1, as scikit-image and the papers compute
    it. The [-1, 1] convention gives another value on these images (0.58 against 0.84), so this tells them apart."""
    from torchvision.transforms.v2.functional import gaussian_blur

    real = real_faces(16)
    fake = (gaussian_blur(real, [5, 5], [1.0, 1.0]) + 0.1).clamp(0, 1)
    expected = float(structural_similarity_index_measure(fake, real, data_range=1.0))
    shifted = float(structural_similarity_index_measure(fake * 2 - 1, real * 2 - 1, data_range=2.0))
    assert abs(expected - shifted) > 0.1
    suite = build_suite(["ssim", "psnr"])
    for half in (slice(0, 8), slice(8, 16)):
        suite.update_pairs(fake[half] * 2 - 1, real[half] * 2 - 1)
    values = suite.compute()
    assert values["ssim"] == pytest.approx(expected, abs=1e-5)
    mse = ((fake - real) ** 2).mean((1, 2, 3))  # PSNR on [0, 1], data range 1, per image then averaged
    assert values["psnr"] == pytest.approx(float((10 * torch.log10(1 / mse)).mean()), abs=1e-3)


@pytest.mark.skipif(not FACES.is_dir(), reason="../shared/data/anime-faces is absent")
def test_ssim_of_a_brightened_dark_face_is_torchmetrics_on_0_1():
    """A real face darkened to [0, 0.1] and brightened by 0.1: 0.54 the field's way (0.97 on [-1, 1], data range 2)."""
    dark = real_faces(1) * 0.1
    expected = float(structural_similarity_index_measure(dark + 0.1, dark, data_range=1.0))
    assert expected < 0.6
    assert ssim_of((dark + 0.1) * 2 - 1, dark * 2 - 1) == pytest.approx(expected, abs=1e-5)


def test_ssim_is_one_for_identical_images_and_lower_with_noise():
    real = smooth_images(4, size=32)
    same, noisy = build_suite(["ssim"]), build_suite(["ssim"])
    same.update_pairs(real, real)
    noisy.update_pairs((real + 0.2 * torch.randn_like(real)).clamp(-1, 1), real)
    assert same.compute()["ssim"] == pytest.approx(1.0, abs=1e-5)
    assert noisy.compute()["ssim"] < 0.9


# --- Fréchet distance -------------------------------------------------------------------------------------------


def test_frechet_distance_of_a_mean_shift_is_known():
    """STAND-IN mean-colour features: shifting every image by c moves the feature mean by c on 3 channels and keeps
    the covariance, so FD = 3 c² (and 0 for the set against itself)."""
    real = smooth_images(32)
    for shift, expected in ((0.0, 0.0), (0.1, 3 * 0.1 ** 2), (0.3, 3 * 0.3 ** 2)):
        suite = build_suite(["fd"], features="vgg16-stlpips", networks={"vgg16-stlpips": MeanColour()})
        suite.update_sets(real, real=True)
        suite.update_sets(real + shift, real=False)
        assert suite.compute()["fd-vgg"] == pytest.approx(expected, abs=1e-4)


def test_fd_vgg_is_zero_for_a_set_with_itself_and_grows_with_noise():
    """The real ST-LPIPS VGG16 weights, at 32x32 inputs for speed (the fd-vgg protocol uses 224): FD(A, A) ≈ 0 and
    FD grows with the noise added to A, over 3 levels."""
    real = smooth_images(12, size=32)
    suite = build_suite(["fd-vgg"], networks={"vgg16-stlpips": VGG16STLPIPSFeatures(size=32)})
    fd = suite.sets["fd-vgg"]
    fd.reset_real_features = False  # the real set's statistics are kept across the resets below
    suite.update_sets(real, real=True)
    values = []
    for sigma in (0.0, 0.1, 0.3, 0.6):
        fd.reset()
        noise = sigma * torch.randn(real.shape, generator=torch.Generator().manual_seed(1))
        suite.update_sets((real + noise).clamp(-1, 1), real=False)
        values.append(suite.compute()["fd-vgg"])
    assert abs(values[0]) < 1e-3 * values[1]
    assert values[1] < values[2] < values[3], values


def test_frechet_distance_needs_two_images_a_side():
    suite = build_suite(["fd"], networks={"vgg16-stlpips": MeanColour()})
    suite.update_sets(smooth_images(1), real=True)
    suite.update_sets(smooth_images(4), real=False)
    with pytest.raises(ValueError, match="at least 2 real and 2 fake images; got 1 real"):
        suite.compute()


# --- codebook usage -------------------------------------------------------------------------------------------------


def test_usage_and_perplexity_over_the_whole_set():
    """Batch 1 uses codes {0, 1}, batch 2 codes {2, 3}, each evenly: 4 of 8 codes used (not 2 per batch), and the
    histogram is uniform over 4 codes, perplexity 4."""
    usage = CodebookUsage(codebook_size=8)
    usage.update(torch.tensor([[[0, 1], [1, 0]]]))
    usage.update(torch.tensor([[[2, 3], [3, 2]]]))
    result = usage.compute()
    assert float(result["usage"]) == pytest.approx(0.5)
    assert float(result["perplexity"]) == pytest.approx(4.0)


def test_perplexity_of_an_uneven_histogram():
    """Counts 3:1 over two codes: perplexity exp(-(3/4 ln 3/4 + 1/4 ln 1/4)) = 1.7548."""
    usage = CodebookUsage(codebook_size=4)
    usage.update(torch.tensor([[[0, 0], [0, 1]]]))
    expected = math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    assert float(usage.compute()["perplexity"]) == pytest.approx(expected, rel=1e-6)
    assert float(usage.compute()["usage"]) == pytest.approx(0.5)


def test_usage_of_several_codebooks_is_per_codebook():
    """Codebook 0 always gives code 0, codebook 1 gives codes 0..3 evenly: usage (1/8 + 4/8) / 2, perplexity
    (1 + 4) / 2. Pooling both codebooks into one histogram would say 4/8 and about 2.8."""
    grid = torch.stack([torch.zeros(2, 2, dtype=torch.long), torch.tensor([[0, 1], [2, 3]])], dim=-1)[None]
    usage = CodebookUsage(codebook_size=8, num_codebooks=2)
    usage.update(grid)
    result = usage.compute()
    assert float(result["usage"]) == pytest.approx((1 / 8 + 4 / 8) / 2)
    assert float(result["perplexity"]) == pytest.approx(2.5)


def test_usage_refuses_tokens_out_of_range():
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        CodebookUsage(codebook_size=4).update(torch.tensor([[[0, 4]]]))


# --- precision / recall ----------------------------------------------------------------------------------------------


def feature_points(n, centre, seed):
    return torch.randn(n, 8, generator=torch.Generator().manual_seed(seed)) + centre


@pytest.mark.parametrize("fake_centre,expected", [(None, 1.0), (1000.0, 0.0)], ids=["identical", "far-apart"])
def test_precision_recall_of_identical_and_disjoint_sets(fake_centre, expected):
    """Identity "network" over feature points: the same set -> precision = recall = 1; a set far away -> 0 and 0."""
    real = feature_points(20, 0.0, seed=0)
    fake = real.clone() if fake_centre is None else feature_points(20, fake_centre, seed=1)
    metric = PrecisionRecall(nn.Identity(), k=3)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    result = metric.compute()
    assert float(result["precision"]) == expected and float(result["recall"]) == expected


def test_precision_counts_the_fakes_inside_the_real_manifold():
    """Half the fakes are copies of real points, half are far away: precision 1/2, and the copies cover their
    own real points, so recall >= 1/2."""
    real = feature_points(20, 0.0, seed=0)
    fake = torch.cat([real[:10], feature_points(10, 1000.0, seed=1)])
    metric = PrecisionRecall(nn.Identity(), k=3)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    result = metric.compute()
    assert float(result["precision"]) == 0.5 and float(result["recall"]) >= 0.5


# --- FID and LPIPS code paths, with stand-ins ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_tokenizer():
    torch.manual_seed(0)
    return vqstack.Tokenizer.from_config(tiny_tokenizer_config()).eval()


def test_rfid_and_lpips_code_paths_with_stand_in_networks(tiny_tokenizer):
    """STAND-INS: mean-colour features in place of InceptionV3 for rfid, and a random-backbone LPIPS, through the
    same suite and loop as the real ones; the report labels them as stand-ins. Only the plumbing is checked, no real
    value. (The random-weight InceptionV3 stand-in itself is checked by the features conformance test.)"""
    stand_ins = {"inception": MeanColour(),
                 "lpips": vqstack.build("perceptual", "lpips", net="alex", pretrained=False)}
    suite = tokenizer_suite(tiny_tokenizer, ["rfid", "lpips", "psnr"], networks=stand_ins)
    images = smooth_images(6, size=32)  # AlexNet's LPIPS needs 32 pixels
    values = evaluate_tokenizer(tiny_tokenizer, [images[:3], {"pixel_values": images[3:]}], suite)
    assert set(values) == {"rfid", "lpips", "psnr"}
    assert values["rfid"] > 0 and values["lpips"] > 0
    assert "stand-in" in suite.networks["rfid"].lower() and "stand-in" in suite.networks["lpips"].lower()

    same = build_suite(["lpips"], networks=stand_ins)
    same.update_pairs(images, images)
    assert same.compute()["lpips"] == pytest.approx(0.0, abs=1e-6)  # the distance of an image to itself


def test_the_random_inception_stand_in_builds_offline_and_keeps_its_random_weights(monkeypatch):
    """STAND-IN: InceptionV3 with random weights (pretrained=False). Nothing is downloaded, the seeded random
    initialisation is what it computes with, and a non-empty state dict still loads strictly."""
    from torch_fidelity import feature_extractor_inceptionv3

    def no_download(*args, **kwargs):
        raise AssertionError("the stand-in must not download weights")

    monkeypatch.setattr(feature_extractor_inceptionv3, "load_state_dict_from_url", no_download)
    nets = []
    for _ in range(2):
        torch.manual_seed(0)
        nets.append(vqstack.build("features", "inception", pretrained=False))
    first, second = (net.net.state_dict() for net in nets)
    assert all(torch.equal(first[name], second[name]) for name in first)  # the seeded init, nothing loaded over it
    assert first["Conv2d_1a_3x3.conv.weight"].std() > 0.01
    images = smooth_images(2, size=32)
    assert nets[0](images).shape == (2, 2048) and not torch.equal(nets[0](images)[0], nets[0](images)[1])
    with pytest.raises(RuntimeError, match="Missing key"):
        nets[0].net.load_state_dict({"fc.bias": first["fc.bias"]})


@pytest.mark.parametrize("metric,file,option", [("rfid", "weights-inception-2015-12-05-6726825d.pth", "--fid-weights"),
                                                ("lpips", "alexnet-owt-7be5be79.pth", "--lpips-weights")])
def test_missing_weights_fail_before_anything_is_built(metric, file, option, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty cache: no file can be found by accident
    with pytest.raises(MissingWeightsError) as err:
        build_suite([metric, "psnr"])
    message = str(err.value)
    assert "\n" not in message and file in message and option in message
    assert str(tmp_path / "hub" / "checkpoints" / file) in message


# --- names ------------------------------------------------------------------------------------------------------------


def test_fd_metrics_are_named_for_their_network():
    keys = [r.key for r in parse_metrics("fd,fd-vgg16-stlpips,fd-inception,rfid,perplexity,precision")]
    assert keys == ["fd-vgg", "fd-inception", "rfid", "usage", "precision"]
    assert [r.network for r in parse_metrics("fd,precision", features="inception")] == ["inception", "inception"]
    assert parse_metrics("fd", features="inception")[0].key == "fd-inception"


@pytest.mark.parametrize("names,mode,match", [
    ("fid", None, "Did you mean 'rfid' .* or 'gfid'"),
    ("pnsr", None, "Did you mean 'psnr'"),
    ("fd-vgx", None, "registered: inception, vgg16-stlpips"),
    ("gfid", "tokenizer", "measures a prior: pass --prior"),
    ("psnr", "prior", "drop --prior"),
    (" , ", None, "No metric given"),
])
def test_metric_name_mistakes_name_the_valid_choices(names, mode, match):
    with pytest.raises(ValueError, match=match):
        parse_metrics(names, mode=mode)


# --- the features registry kind -----------------------------------------------------------------------------------


class NotFrozen(FeatureNetwork):
    """STAND-IN with a trainable layer: the conformance check must refuse it."""

    num_features = 4
    description = "TEST STAND-IN: not frozen"

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(3, 4)

    def forward(self, images):
        return self.proj(images.mean((2, 3)))


class FeaturesPlugin:
    @vqstack.hookimpl
    def vqstack_register_features(self, registry):
        registry.register("mean-colour", MeanColour)
        registry.register("not-frozen", NotFrozen)


def test_a_plugin_adds_a_features_network(fresh_plugins):
    from vqstack.conformance import check_component

    vqstack.register_plugin(FeaturesPlugin(), name="test-features")
    assert {"inception", "mean-colour", "vgg16-stlpips"} <= set(vqstack.components("features"))
    assert parse_metrics("fd-mean-colour")[0].network == "mean-colour"
    check_component("features", "mean-colour")
    with pytest.raises(AssertionError, match="frozen"):
        check_component("features", "not-frozen")


# --- priors: samples and NLL --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_prior():
    torch.manual_seed(0)
    prior = vqstack.build("prior", "ar", vocab_size=32, seq_len=16, dim=32, depth=1, heads=2,
                          attributes={"hair": ["blue", "red"]})
    nn.init.normal_(prior.head.weight, std=0.5)  # the head starts at zero: make the likelihoods differ
    return prior.eval()


def test_token_nll_is_the_mean_cross_entropy_per_token(tiny_prior):
    sequences = torch.randint(0, 32, (5, 16), generator=torch.Generator().manual_seed(0))
    labels = ["blue hair", None, "red hair", "blue hair", None]
    with torch.no_grad():
        logits = torch.cat([tiny_prior(sequences[i:i + 1], labels=[labels[i]]).logits for i in range(5)])
    expected = nn.functional.cross_entropy(logits.flatten(0, 1), sequences.flatten()).item()
    assert token_nll(tiny_prior, sequences, labels, batch_size=2) == pytest.approx(expected, rel=1e-5)


def test_sequence_labels_follow_the_prior_conditions(tiny_prior):
    from datasets import Dataset

    rows = Dataset.from_dict({"tokens": [[0] * 16] * 2, "hair": ["red", None]})
    assert sequence_labels(tiny_prior, rows, ["hair"]) == [{"hair": "red"}, {"hair": None}]


def test_samples_do_not_depend_on_how_chunks_are_spread(tiny_tokenizer, tiny_prior):
    """Chunk i is sampled from its own seed: two processes' chunks together are one process's samples."""
    pipe = vqstack.Pipeline(tiny_tokenizer, tiny_prior)
    one = torch.cat(list(sample_images(pipe, 3, "blue hair", batch_size=2, seed=3)))
    rank0 = list(sample_images(pipe, 3, "blue hair", batch_size=2, seed=3, rank=0, world=2))
    rank1 = list(sample_images(pipe, 3, "blue hair", batch_size=2, seed=3, rank=1, world=2))
    assert len(rank0) == len(rank1) == 1 and torch.equal(one, torch.cat([rank0[0], rank1[0]]))
    assert one.shape == (3, 3, 16, 16) and one.min() >= -1 and one.max() <= 1
    assert chunk_seed(3, 0) != chunk_seed(3, 1) != chunk_seed(4, 0)
    assert labels_for(["a", "b"], 3, 3) == ["b", "a", "b"] and labels_for("a", 3, 2) == "a"
