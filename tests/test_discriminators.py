"""PatchGAN and StyleGAN discriminators: logit shapes, norms, blur downsampling, gradients, clear errors."""
import pytest
import torch

import vqstack
from vqstack.discriminators import PatchDiscriminator, StyleGANDiscriminator
from vqstack.discriminators.patchgan import NORMS
from vqstack.discriminators.stylegan import BlurDownsample, final_size


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("size", [32, 64, 96])
def test_patchgan_logit_shapes(norm, size):
    d = PatchDiscriminator(ch=8, num_layers=3, norm=norm)
    x = torch.rand(2, 3, size, size) * 2 - 1
    logits = d(x)
    assert logits.shape == (2, 1, size // 8 - 2, size // 8 - 2)  # 3 stride-2 convs, then two 4x4 convs (-1 each)
    logits.mean().backward()


def test_patchgan_defaults_are_pix2pix():
    d = vqstack.build("discriminator", "patchgan")
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in d.modules()) == 3
    assert sum(p.numel() for p in d.parameters()) == 2_765_633  # taming's NLayerDiscriminator(3, 64, 3)
    with torch.no_grad():
        assert d.eval()(torch.zeros(1, 3, 64, 64)).shape == (1, 1, 6, 6)


def test_patchgan_norm_choices():
    def kinds(norm):
        return {type(m).__name__ for m in PatchDiscriminator(ch=8, norm=norm).modules()}
    assert "GroupNorm" in kinds("group") and "BatchNorm2d" not in kinds("group")
    assert not {"GroupNorm", "BatchNorm2d"} & kinds("none")
    spectral = PatchDiscriminator(ch=8, norm="spectral")
    assert all(hasattr(m, "parametrizations") for m in spectral.modules() if isinstance(m, torch.nn.Conv2d))
    with pytest.raises(ValueError, match="Unknown norm 'layer'.*batch, group, none, spectral"):
        PatchDiscriminator(norm="layer")


def test_patchgan_too_small_input_fails_clearly():
    with pytest.raises(ValueError, match="at least 24x24"):
        PatchDiscriminator(ch=8, num_layers=3)(torch.zeros(1, 3, 16, 16))


@pytest.mark.parametrize("size,blocks,final", [(32, 3, 4), (64, 4, 4), (96, 4, 6), (48, 3, 6), (256, 6, 4)])
def test_stylegan_sizes(size, blocks, final):
    assert final_size(size) == (blocks, final)
    if size <= 96:
        d = StyleGANDiscriminator(ch=8, max_channels=32, resolution=size)
        assert len(d.blocks) == blocks
        x = torch.randn(2, 3, size, size, requires_grad=True)
        logits = d(x)
        assert logits.shape == (2, 1)
        logits.sum().backward()
        assert x.grad.abs().sum() > 0


def test_stylegan_channels_double_up_to_the_cap():
    d = StyleGANDiscriminator(ch=8, max_channels=32, resolution=64)
    assert [b.conv2.out_channels for b in d.blocks] == [16, 32, 32, 32]
    assert d.fc.in_features == 32 * 4 * 4


@pytest.mark.parametrize("resolution", [100, 36, 2])
def test_stylegan_rejects_resolutions_it_cannot_reduce(resolution):
    with pytest.raises(ValueError, match="s in 4..7"):
        StyleGANDiscriminator(resolution=resolution)


def test_stylegan_input_size_must_match_resolution():
    d = StyleGANDiscriminator(**StyleGANDiscriminator.example_kwargs())
    with pytest.raises(ValueError, match="built for 32x32 inputs"):
        d(torch.zeros(1, 3, 64, 64))


def test_blur_downsample_is_the_normalised_1331_filter():
    blur = BlurDownsample()
    k = torch.tensor([1.0, 3.0, 3.0, 1.0])
    torch.testing.assert_close(blur.kernel[0, 0], torch.outer(k, k) / 64)
    assert "kernel" not in blur.state_dict()  # fixed filter, not saved
    x = torch.ones(1, 2, 8, 8)
    y = blur(x)
    assert y.shape == (1, 2, 4, 4)
    torch.testing.assert_close(y[..., 1:-1, 1:-1], torch.ones(1, 2, 2, 2))  # a constant passes unchanged
    # a pixel-wide stripe pattern (the highest frequency) is removed in the interior: no aliasing into low freqs
    stripes = torch.tensor([1.0, -1.0]).repeat(4).expand(1, 1, 8, 8)
    torch.testing.assert_close(blur(stripes)[..., 1:-1, 1:-1], torch.zeros(1, 1, 2, 2))
