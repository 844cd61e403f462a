"""Perceptual losses: frozen, per-sample, offline. LPIPS's ImageNet backbone is not available here, so LPIPS tests
use a random backbone (pretrained=False) or a random stand-in checkpoint: their numbers are NOT a metric, only
shapes, gradients and loading are checked. ST-LPIPS ships real weights, so its values are checked for sense."""
import importlib.util
import socket
import sys

import pytest
import torch
import torchvision

import vqstack
from vqstack.perceptual import LPIPS, STLPIPS
from vqstack.perceptual.lpips import default_backbone_path


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test loudly."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def smooth_images(n=2, size=64, seed=0):
    """Smooth colour patterns with a sharp-edged disc: image-like content without any data files."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    images = []
    for _ in range(n):
        f, p = torch.rand(3, 2, generator=g) * 4 + 1, torch.rand(3, 2, generator=g) * 6.28
        img = torch.stack([torch.sin(f[c, 0] * xx + p[c, 0]) * torch.cos(f[c, 1] * yy + p[c, 1]) for c in range(3)])
        cx, cy = torch.rand(2, generator=g) - 0.5
        images.append(0.9 * torch.where((xx - cx) ** 2 + (yy - cy) ** 2 < 0.15, -img.flip(0), img))
    return torch.stack(images)


def check_frozen_loss(loss, size=32):
    x = torch.rand(2, 3, size, size) * 2 - 1
    y = (x + 0.3 * torch.randn_like(x)).clamp(-1, 1).requires_grad_(True)
    d = loss(x, y)
    assert d.shape == (2,)
    d.sum().backward()
    assert y.grad is not None and y.grad.abs().sum() > 0, "gradient must reach the input"
    assert all(not p.requires_grad and p.grad is None for p in loss.parameters()), "parameters must stay frozen"
    loss.train()  # a training loop puts everything in train mode; a perceptual loss must ignore it
    assert not loss.training and not any(m.training for m in loss.modules())
    with torch.no_grad():
        assert loss(x, x).abs().max() < 1e-6
    with pytest.raises(ValueError, match="same shape"):
        loss(x, x[:1])


# --- LPIPS ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def random_alex():
    # random backbone: NOT a metric; only shape, freezing and gradients are meaningful
    return LPIPS(net="alex", pretrained=False)


def test_lpips_random_backbone_works_offline(no_network):
    loss = vqstack.build("perceptual", "lpips", **LPIPS.example_kwargs())  # VGG16, random backbone: not a metric
    assert loss.net == "vgg" and not loss.pretrained
    check_frozen_loss(loss)


def test_lpips_random_alex_is_frozen(random_alex):
    check_frozen_loss(random_alex)  # numbers from a random backbone are not LPIPS


def test_lpips_missing_backbone_fails_before_any_download(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    expected = tmp_path / "hub" / "checkpoints" / "vgg16-397923af.pth"
    assert default_backbone_path("vgg") == expected
    with pytest.raises(FileNotFoundError) as err:
        LPIPS()
    message = str(err.value)
    for part in ("vgg16-397923af.pth", str(expected), "TORCH_HOME", "backbone_weights=", "pretrained=False",
                 "https://download.pytorch.org/models/vgg16-397923af.pth", "not LPIPS"):
        assert part in message, part
    with pytest.raises(FileNotFoundError, match="alexnet-owt-7be5be79.pth"):
        LPIPS(net="alex")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        LPIPS(backbone_weights=tmp_path / "nope.pth")


def test_lpips_loads_torchvision_checkpoints_from_hub_cache_and_path(tmp_path, monkeypatch, no_network):
    # A random SqueezeNet saved as torchvision would: a stand-in for the real ImageNet file (5 MB, not a metric).
    torch.manual_seed(0)
    reference = torchvision.models.squeezenet1_1().state_dict()
    cache = tmp_path / "hub" / "checkpoints" / "squeezenet1_1-b8a52dc0.pth"
    cache.parent.mkdir(parents=True)
    torch.save(reference, cache)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    for loss in (LPIPS(net="squeeze"), LPIPS(net="squeeze", backbone_weights=str(cache))):
        trunk = loss.model.net.state_dict()
        assert len(trunk) > 0
        for key, value in trunk.items():  # slice2.3.squeeze.weight <- features.3.squeeze.weight
            torch.testing.assert_close(value, reference["features." + key.split(".", 1)[1]])
        assert all(not p.requires_grad for p in loss.parameters())
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "wrong.pth")
    with pytest.raises(ValueError, match="not torchvision's ImageNet squeeze checkpoint"):
        LPIPS(net="squeeze", backbone_weights=tmp_path / "wrong.pth")


def test_lpips_argument_errors():
    with pytest.raises(ValueError, match="Unknown LPIPS net 'resnet'; choose one of vgg, alex, squeeze"):
        LPIPS(net="resnet")
    with pytest.raises(ValueError, match="pretrained=False"):
        LPIPS(pretrained=False, backbone_weights="x.pth")


# --- ST-LPIPS ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stlpips_alex():
    return STLPIPS(net="alex")


def test_stlpips_loads_offline_without_stand_ins_leaking(no_network, monkeypatch):
    for name in [n for n in sys.modules if n.startswith("stlpips_pytorch")]:
        monkeypatch.delitem(sys.modules, name)  # import it afresh, through vqstack's import_stlpips
    missing = [n for n in ("IPython", "torchsummary") if importlib.util.find_spec(n) is None]
    loss = vqstack.build("perceptual", "stlpips")
    assert loss.net == "vgg"  # the default: VGG16, VQGAN's perceptual-loss backbone
    for name in missing:  # the stand-in for an undeclared debugging import never stays behind
        assert name not in sys.modules, name
    x = smooth_images(size=48)
    noisy = (x + 0.2 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(-1, 1)
    with torch.no_grad():
        assert loss(x, x).abs().max() < 1e-6
        d_noise = loss(x, noisy)
        d_shift = loss(x, torch.roll(x, 1, dims=3))
    # Real ImageNet weights: visible noise is far (a random backbone gives ~0.01), a 1-pixel shift is near.
    assert (d_noise > 0.2).all(), d_noise
    assert (d_shift < 0.2 * d_noise).all(), (d_shift, d_noise)


def test_stlpips_alex_is_frozen_and_sensible(stlpips_alex):
    check_frozen_loss(stlpips_alex, size=32)
    x, other = smooth_images(seed=0), smooth_images(seed=5)
    with torch.no_grad():
        assert (stlpips_alex(x, other) > 0.2).all()


def test_stlpips_errors(stlpips_alex):
    with pytest.raises(ValueError, match="Unknown ST-LPIPS net 'squeeze'; choose one of vgg, alex"):
        STLPIPS(net="squeeze")
    with pytest.raises(ValueError, match="at least 21 pixels"):
        stlpips_alex(torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 16))
