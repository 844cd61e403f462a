"""Image data: every source --data accepts, every image mode users have, and unreadable files."""
import io
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from helpers.recipes import SHARED_DATA
from vqstack.data import DataError, ImageDataset, load_image_dataset, to_rgb


def png_bytes(image: Image.Image, fmt="PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def gradient(size=20) -> Image.Image:
    x = np.linspace(0, 255, size, dtype=np.uint8)
    return Image.fromarray(np.stack([np.tile(x, (size, 1))] * 3, axis=-1))


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "I;16", "LA", "1", "F"])
def test_every_mode_becomes_8bit_rgb(mode):
    image = gradient().convert(mode) if mode not in ("I;16", "F") else None
    if mode == "I;16":
        image = Image.fromarray((np.tile(np.linspace(0, 65535, 20), (20, 1))).astype(np.uint16))
    if mode == "F":
        image = Image.fromarray(np.tile(np.linspace(0, 255, 20), (20, 1)).astype(np.float32))
    rgb = to_rgb(image)
    assert rgb.mode == "RGB" and rgb.size == (20, 20)
    array = np.asarray(rgb)
    assert array.max() > 150, f"{mode}: the bright end must stay bright, got max {array.max()}"


def test_transparent_pixels_become_white():
    image = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert np.asarray(to_rgb(image))[0, 0].tolist() == [255, 255, 255]


def test_image_folder_with_tags_and_unreadable_files(tmp_path):
    for i in range(6):
        gradient(24).save(tmp_path / f"{i}.png")
    (tmp_path / "3.png").write_bytes(b"not a png at all")
    (tmp_path / "metadata.jsonl").write_text("".join(
        f'{{"file_name": "{i}.png", "hair": "blue", "eyes": null}}\n' for i in range(6)))
    dataset = load_image_dataset(str(tmp_path))
    assert {"hair", "eyes"} <= set(dataset.column_names)
    images = ImageDataset(dataset, resolution=16)
    samples = [images[i] for i in range(len(images))]
    assert all(s["pixel_values"].shape == (3, 16, 16) for s in samples)
    assert all(-1 <= s["pixel_values"].min() and s["pixel_values"].max() <= 1 for s in samples)
    assert sum(s["skipped"] for s in samples) == 1, "the unreadable file is skipped once and counted"


def test_webdataset_shards_by_glob(tmp_path):
    for shard in range(2):
        with tarfile.open(tmp_path / f"train-{shard}.tar", "w") as tar:
            for i in range(3):
                for suffix, payload in ((".png", png_bytes(gradient())), (".cls", str(i).encode())):
                    info = tarfile.TarInfo(f"{shard}{i:05d}{suffix}")
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))
    dataset = load_image_dataset(str(tmp_path / "train-*.tar"))
    assert len(dataset) == 6
    assert ImageDataset(dataset, resolution=8)[0]["pixel_values"].shape == (3, 8, 8)


def test_parquet_files(tmp_path):
    from datasets import Dataset, Image as ImageFeature

    Dataset.from_dict({"image": [gradient(12)] * 4, "label": [0, 1, 0, 1]}).cast_column(
        "image", ImageFeature()).to_parquet(str(tmp_path / "part-0.parquet"))
    dataset = load_image_dataset(str(tmp_path))
    assert len(dataset) == 4 and ImageDataset(dataset, 8)[3]["pixel_values"].shape == (3, 8, 8)


def test_flips_depend_on_seed_epoch_and_index_only(tmp_path):
    for i in range(8):
        gradient(16).save(tmp_path / f"{i}.png")
    images = ImageDataset(load_image_dataset(str(tmp_path)), resolution=16, seed=3)
    first = [images[i]["pixel_values"] for i in range(8)]
    torch.manual_seed(99)  # the global RNG must not matter
    again = [images[i]["pixel_values"] for i in range(8)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    flipped = [not torch.equal(x, first[0]) for x in first]
    assert any(flipped) and not all(flipped), "about half the images are flipped"


@pytest.mark.parametrize("data,message", [
    ("/no/such/dir/*.tar", "matches no files"),
    ("not a dataset", "neither a folder"),
])
def test_bad_data_arguments_say_what_is_accepted(data, message):
    with pytest.raises(DataError, match=message):
        load_image_dataset(data)


def test_unreachable_hub_dataset_suggests_local_data(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match="pass a local image folder"):
        load_image_dataset("vqstack-tests/does-not-exist")


@pytest.mark.skipif(not (SHARED_DATA / "cifar10").is_dir(), reason="../shared/data/cifar10 is absent")
def test_real_cifar10_shards():
    dataset = load_image_dataset(str(SHARED_DATA / "cifar10"))
    assert len(dataset) == 50_000 and "cls" in dataset.column_names
    assert ImageDataset(dataset, resolution=32)[0]["pixel_values"].shape == (3, 32, 32)
