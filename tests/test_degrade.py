"""Degradations for restoration (vqstack.data.degradations): the spec grammar, what each step measurably does,
reproducibility from (seed, epoch, index) in and out of DataLoader workers, and ``vqstack degrade``."""
import json
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from vqstack.cli import main
from vqstack.data.degradations import Degradation, parse_spec

EXAMPLE = "blur:0.5-2,down:4,noise:0-0.1,jpeg:30-90"
ALL = "blur:0.5-2,down:2|4|8,noise:0-0.1,poisson:50-200,jpeg:30-90"


def flat(value: float, size: int = 64, batch: int = 1) -> torch.Tensor:
    """Images of one grey level, ``value`` on the [0, 1] scale, in the project's [-1, 1] convention."""
    return torch.full((batch, 3, size, size), value * 2 - 1)


def board(period: int, size: int = 64) -> torch.Tensor:
    """A checkerboard repeating every ``period`` pixels, in [-0.8, 0.8]."""
    i = torch.arange(size) // (period // 2)
    return (((i[:, None] + i[None, :]) % 2).float() * 1.6 - 0.8).expand(3, size, size).clone()


def smooth(size: int = 64) -> torch.Tensor:
    """A smooth colour image: JPEG of it at a high quality is nearly exact."""
    y, x = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    return torch.stack([torch.sin(3 * x + 2 * y), torch.cos(2 * x - 3 * y), x * y * 2 - 1]) * 0.8


def on_unit_scale(images: torch.Tensor) -> torch.Tensor:
    return (images + 1) / 2


@pytest.mark.parametrize("spec", [EXAMPLE, ALL, "blur:1", "down:8", "noise:0.05,noise:0-0.01", "poisson:1-1000000",
                                  "jpeg:10,blur:0.001-0.5"])
def test_canonical_specs_read_back_as_written(spec):
    assert str(parse_spec(spec)) == spec
    assert parse_spec(str(parse_spec(spec))) == parse_spec(spec)


def test_specs_are_normalised_and_recorded_as_json():
    degradation = parse_spec(" blur : 0.50-2.0 , down:8|2|2, jpeg:40-40 ", seed=7)
    assert str(degradation) == "blur:0.5-2,down:2|8,jpeg:40"
    config = json.loads(json.dumps(degradation.to_config()))
    assert config == {"spec": "blur:0.5-2,down:2|8,jpeg:40", "seed": 7}
    assert Degradation.from_config(config) == degradation
    assert Degradation.from_config("jpeg:40") == parse_spec("jpeg:40")


@pytest.mark.parametrize("spec, message", [
    ("blurr:1", r"unknown degradation 'blurr' \(did you mean 'blur'\?\); known: blur, down, noise, poisson, jpeg"),
    ("sharpen:2", r"unknown degradation 'sharpen'; known: blur, down, noise, poisson, jpeg"),
    ("blur:2-1", r"low 2 > high 1"),
    ("blur:0-50", r"sigma in pixels must lie in 0\.\.20"),
    ("noise:0-2", r"std on the \[0, 1\] image scale must lie in 0\.\.1"),
    ("noise:abc", r"noise:abc: expected .* a number or a LOW-HIGH range, e.g. noise:0-0.1"),
    ("poisson:0.5-10", r"photons at white must lie in 1\.\.1000000"),
    ("jpeg:0-50", r"quality must lie in 1\.\.100"),
    ("jpeg:30.5", r"quality must be whole numbers"),
    ("down:3", r"factor must be one of 2, 4, 8, or a choice such as down:2\|4\|8"),
    ("down:2-8", r"factor must be one of 2, 4, 8"),
    ("", r"empty degradation spec; give steps such as blur:0.5-2"),
    ("blur", r"'blur' needs its parameters after a colon"),
    ("blur:1,,jpeg:50", r"empty step"),
])
def test_spec_mistakes_raise_one_line_naming_the_choices(spec, message):
    with pytest.raises(ValueError, match=message) as error:
        parse_spec(spec)
    assert "\n" not in str(error.value)


def test_the_same_seed_gives_the_same_degradation_and_others_differ():
    degradation, image = parse_spec(ALL, seed=3), smooth(32)
    first = degradation.sample(image, index=5, epoch=1)
    assert torch.equal(first, degradation.sample(image, index=5, epoch=1))
    assert not torch.equal(first, degradation.sample(image, index=6, epoch=1))
    assert not torch.equal(first, degradation.sample(image, index=5, epoch=2))
    assert not torch.equal(first, parse_spec(ALL, seed=4).sample(image, index=5, epoch=1))
    # a batch of equal images: one generator, yet every image draws its own parameters and noise
    batch = image.expand(4, -1, -1, -1)
    out = degradation(batch, torch.Generator().manual_seed(0))
    assert torch.equal(out, degradation(batch, torch.Generator().manual_seed(0)))
    assert all(not torch.equal(out[0], other) for other in out[1:])


def test_blur_removes_high_frequencies():
    noise = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    energy = lambda x: (x[..., 1:] - x[..., :-1]).pow(2).mean()  # noqa: E731
    assert energy(parse_spec("blur:1.5")(noise)) < energy(noise) / 10
    assert energy(parse_spec("blur:0.5")(noise)) > energy(parse_spec("blur:1.5")(noise))
    assert torch.equal(parse_spec("blur:0")(noise), noise)


def test_down_loses_detail_finer_than_its_factor_and_keeps_coarser():
    assert parse_spec("down:4")(board(4)).std() < 0.01  # 4-pixel period: gone, not aliased into a coarse pattern
    assert parse_spec("down:2")(board(8)).std() > 0.5  # 8-pixel period survives halving
    assert parse_spec("down:8")(board(16)).std() < parse_spec("down:4")(board(16)).std() / 2
    assert parse_spec("down:4")(board(4)).shape == (3, 64, 64)


def test_gaussian_noise_has_the_requested_std():
    out = on_unit_scale(parse_spec("noise:0.1")(flat(0.5, batch=4)))
    assert out.std().item() == pytest.approx(0.1, rel=0.05)
    assert out.mean().item() == pytest.approx(0.5, abs=0.01)


def test_poisson_variance_grows_with_brightness():
    variance = {v: on_unit_scale(parse_spec("poisson:100")(flat(v, batch=4))).var().item() for v in (0.2, 0.8)}
    for v, measured in variance.items():  # Poisson(v * 100) / 100 has variance v / 100
        assert measured == pytest.approx(v / 100, rel=0.15)
    assert variance[0.8] > 3 * variance[0.2]


def test_jpeg_quality_sets_the_error_and_low_quality_shows_8x8_blocks():
    image = smooth()
    error = {q: (parse_spec(f"jpeg:{q}")(image) - image).abs().mean().item() for q in (10, 95)}
    assert error[10] > 3 * error[95]

    def blockiness(x):  # mean step across the column boundaries of 8x8 blocks over the mean step inside them
        steps = (x[..., :, 1:] - x[..., :, :-1]).abs().mean(dim=(0, 1))
        return (steps[7::8].mean() / torch.cat([steps[k::8] for k in range(7)]).mean()).item()

    assert blockiness(image) < 1.1
    assert blockiness(parse_spec("jpeg:10")(image)) > 2


@pytest.mark.parametrize("shape", [(3, 32, 32), (2, 3, 32, 48)])
def test_shape_range_and_dtype_are_kept_for_one_image_and_a_batch(shape):
    images = torch.rand(shape, dtype=torch.float64) * 2.4 - 1.2  # even beyond [-1, 1] in: clamped out
    out = parse_spec(ALL)(images, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.dtype == torch.float64
    assert out.min() >= -1 and out.max() <= 1


@pytest.mark.parametrize("images", [torch.zeros(3, 32), torch.zeros(1, 3, 8, 8, dtype=torch.uint8),
                                    torch.zeros(1, 4, 8, 8)])
def test_other_inputs_are_refused(images):
    with pytest.raises(ValueError, match=r"expected float images \(3, H, W\) or \(B, 3, H, W\) in \[-1, 1\]"):
        parse_spec("blur:1")(images)


class Degraded(torch.utils.data.Dataset):
    """Equal clean images; each sample degraded from (seed, epoch, index), as a restorer's data set does."""

    def __init__(self, degradation):
        self.degradation, self.image = degradation, smooth(32)

    def __len__(self):
        return 6

    def __getitem__(self, index):
        return self.degradation.sample(self.image, index, epoch=2)


def test_workers_degrade_exactly_as_the_main_process():
    degradation = pickle.loads(pickle.dumps(parse_spec(ALL, seed=1)))
    batches = {workers: torch.cat(list(torch.utils.data.DataLoader(Degraded(degradation), batch_size=2,
                                                                   num_workers=workers)))
               for workers in (0, 2)}
    assert torch.equal(batches[0], batches[2])
    assert not torch.equal(batches[0][0], batches[0][1])


def test_pil_images_are_degraded_reproducibly():
    image = Image.new("RGBA", (40, 24), (200, 100, 50, 128))
    degradation = parse_spec("noise:0.05,jpeg:50")
    out = degradation.pil(image, seed=1)
    assert out.mode == "RGB" and out.size == (40, 24)
    assert np.array_equal(np.asarray(out), np.asarray(degradation.pil(image, seed=1)))
    assert not np.array_equal(np.asarray(out), np.asarray(degradation.pil(image, seed=2)))


def _face(path, seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return pixels


def test_cli_degrades_a_file_and_a_folder(tmp_path, capsys):
    pixels = _face(tmp_path / "one.png")
    assert main(["degrade", "--spec", EXAMPLE, "--image", str(tmp_path / "one.png"),
                 "--out", str(tmp_path / "one-out.png"), "--seed", "3"]) == 0
    out = np.asarray(Image.open(tmp_path / "one-out.png"))
    assert out.shape == pixels.shape and not np.array_equal(out, pixels)
    assert f"1 image degraded with {EXAMPLE}" in capsys.readouterr().out

    folder = tmp_path / "in"
    folder.mkdir()
    _face(folder / "a.png", 1), _face(folder / "b.jpg", 2)
    (folder / "notes.txt").write_text("not an image")
    assert main(["degrade", "--spec", "jpeg:20", "--image", str(folder), "--out", str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.jpg"]
    assert Image.open(tmp_path / "out" / "b.jpg").size == (32, 24)


def test_cli_bad_spec_exits_2_with_one_line(tmp_path, capsys):
    _face(tmp_path / "one.png")
    assert main(["degrade", "--spec", "blur:1,smudge:3", "--image", str(tmp_path / "one.png"),
                 "--out", str(tmp_path / "out.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vqstack degrade: error: unknown degradation 'smudge'; known: blur, down, noise, poisson")
    assert err.count("\n") == 1
    assert not (tmp_path / "out.png").exists()


def test_cli_paths_that_do_not_fit_are_one_line_or_go_into_the_folder(tmp_path, capsys):
    _face(tmp_path / "one.png")
    folder = tmp_path / "existing"
    folder.mkdir()
    # a file into an existing folder keeps its name there
    assert main(["degrade", "--spec", "blur:1", "--image", str(tmp_path / "one.png"), "--out", str(folder)]) == 0
    assert (folder / "one.png").is_file()
    # a folder onto an existing file is one line naming the problem, nothing written
    assert main(["degrade", "--spec", "blur:1", "--image", str(folder), "--out", str(tmp_path / "one.png")]) == 2
    err = capsys.readouterr().err
    assert "is a file; a folder --image needs a folder --out" in err and err.count("\n") == 1


def test_alternatives_draw_one_pipeline_per_image_and_round_trip():
    degradation = parse_spec("blur:3;noise:0.3", seed=1)
    assert str(degradation) == "blur:3;noise:0.3"
    assert parse_spec(str(degradation)) == parse_spec("blur:3;noise:0.3")
    image = torch.linspace(-1, 1, 3 * 16 * 16).reshape(3, 16, 16)
    blurred = parse_spec("blur:3").sample(image, 0)
    kinds = set()
    for index in range(20):
        out = degradation.sample(image, index)
        assert torch.equal(out, degradation.sample(image, index))  # per-sample reproducible
        # a blur of a smooth ramp stays smooth; noise of std 0.3 does not
        kinds.add("noise" if (out - blurred).abs().max() > 0.2 else "blur")
    assert kinds == {"blur", "noise"}


def test_alternatives_report_an_unknown_step_in_any_branch():
    with pytest.raises(ValueError, match="unknown degradation 'blurr'.*known: blur, down"):
        parse_spec("down:4;blurr:2")
    with pytest.raises(ValueError, match="empty"):
        parse_spec("down:4;")
