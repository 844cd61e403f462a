"""Issue #9, bad input: one folder mixing good images with every kind of bad or odd file users have. Training uses
what can be read or converted, counts what it skips and why, and a data set with nothing readable stops early."""
import io

import numpy as np
import pytest
import torch
from PIL import Image

from vqstack.data.images import (SKIP_REASONS, DataError, ImageDataset, SkipTally, check_readable, decode,
                                 load_image_dataset, skip_reason)

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def noise(size=64) -> Image.Image:
    """Incompressible pixels, so a cut file really misses image data."""
    return Image.effect_noise((size, size), 60).convert("RGB")


def palette(colour, transparent: bool) -> Image.Image:
    image = Image.new("P", (24, 24), 1)
    image.putpalette([255, 255, 255, *colour] + [0, 0, 0] * 254)
    if transparent:  # index 0 is transparent; paint its half, which must come out white
        image.paste(0, (0, 0, 12, 24))
        image.info["transparency"] = 0
    return image


def sixteen_bit(level: float) -> Image.Image:
    return Image.fromarray(np.full((24, 24), int(level * 65535), dtype=np.uint16))  # mode "I;16"


# name -> (file bytes, expected mean RGB in [0, 255] of the 16x16 result, or a skip reason)
def bad_and_odd_files() -> dict:
    jpeg, png = encoded(noise(), "JPEG", quality=95), encoded(noise(), "PNG")
    return {
        "good_red.png": (encoded(Image.new("RGB", (24, 24), RED), "PNG"), RED),
        "good_blue.jpg": (encoded(Image.new("RGB", (24, 24), BLUE), "JPEG", quality=95), BLUE),
        "truncated.jpg": (jpeg[: len(jpeg) // 2], "truncated"),
        "truncated.png": (png[: len(png) // 2], "truncated"),
        "zero.png": (b"", "empty"),
        "text.jpg": (b"<html>404 not found</html>\n", "not_an_image"),
        "gray.png": (encoded(Image.new("L", (24, 24), 128), "PNG"), (128, 128, 128)),
        "rgba_red.png": (encoded(Image.new("RGBA", (24, 24), (*RED, 255)), "PNG"), RED),
        "palette_green.png": (encoded(palette(GREEN, transparent=False), "PNG"), GREEN),
        "palette_alpha.png": (encoded(palette(GREEN, transparent=True), "PNG"), (128, 255, 128)),
        "cmyk_red.jpg": (encoded(Image.new("CMYK", (24, 24), (0, 255, 255, 0)), "JPEG", quality=95), RED),
        "sixteen_bit.png": (encoded(sixteen_bit(0.5), "PNG"), (128, 128, 128)),
        "one_pixel.png": (encoded(Image.new("RGB", (1, 1), GREEN), "PNG"), GREEN),
        "large_blue.png": (encoded(Image.new("RGB", (3000, 2000), BLUE), "PNG"), BLUE),
    }


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mixed")
    files = bad_and_odd_files()
    for name, (payload, _) in files.items():
        (folder / name).write_bytes(payload)
    return folder, files


def expectations(dataset: ImageDataset, files: dict) -> list:
    """What each row should give, in the data set's own row order."""
    return [files[row["image"]["path"].rsplit("/", 1)[-1]][1] for row in dataset.dataset]


def test_convertible_images_keep_their_colour_and_bad_ones_are_skipped_for_their_reason(mixed):
    folder, files = mixed
    images = ImageDataset(load_image_dataset(str(folder)), resolution=16, random_flip=False)
    assert len(images) == len(files), "imagefolder lists zero-byte and non-image files too: we must skip them"
    for index, expected in enumerate(expectations(images, files)):
        sample = images[index]
        assert sample["skip_counts"].dtype == torch.long and sample["skip_counts"].shape == (len(SKIP_REASONS),)
        if isinstance(expected, str):
            assert sample["skipped"] == 1 and sample["index"] != index
            assert sample["skip_counts"].tolist() == [int(r == expected) for r in SKIP_REASONS], expected
            continue
        pixels = sample["pixel_values"]
        assert sample["skipped"] == 0 and sample["skip_counts"].sum() == 0 and sample["index"] == index
        assert pixels.shape == (3, 16, 16) and -1 <= pixels.min() and pixels.max() <= 1
        colour = ((pixels.mean((1, 2)) + 1) * 127.5).tolist()
        assert colour == pytest.approx(expected, abs=12), f"row {index}: {colour} != {expected}"


def test_a_loader_and_skip_tally_count_each_bad_file_once_per_pass(mixed):
    folder, files = mixed
    images = ImageDataset(load_image_dataset(str(folder)), resolution=16)
    tally = SkipTally()
    assert tally.total == 0 and tally.message() is None and tally.as_dict() == {"skipped_images": 0}
    batches = 0
    for batch in torch.utils.data.DataLoader(images, batch_size=4, num_workers=0):
        assert batch["pixel_values"].shape[1:] == (3, 16, 16) and batch["skip_counts"].shape[1] == len(SKIP_REASONS)
        tally.add(batch)
        batches += 1
    assert batches == 4, "batches keep their size: unreadable rows are replaced, not dropped"
    assert tally.as_dict() == {"skipped_images": 4, "skipped/empty": 1, "skipped/not_an_image": 1,
                               "skipped/truncated": 2}
    assert tally.message() == "skipped 4 unreadable images so far: 1 empty, 1 not_an_image, 2 truncated"


def test_skip_tally_takes_gathered_count_tensors():
    tally = SkipTally()
    tally.add(torch.tensor([[0, 0, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0]]))
    tally.add({"skip_counts": torch.tensor([[0, 0, 1, 0, 0, 0]])})
    assert tally.total == 3 and tally.as_dict() == {"skipped_images": 3, "skipped/empty": 1, "skipped/truncated": 2}
    assert tally.message() == "skipped 3 unreadable images so far: 1 empty, 2 truncated"


def test_check_readable_passes_on_the_mixed_folder(mixed):
    folder, _ = mixed
    images = ImageDataset(load_image_dataset(str(folder)), resolution=16)
    row = check_readable(images, str(folder))
    assert images[row]["skipped"] == 0


def test_nothing_readable_stops_with_one_line_naming_source_count_and_reasons(tmp_path):
    for name, (payload, expected) in bad_and_odd_files().items():
        if isinstance(expected, str):
            (tmp_path / name).write_bytes(payload)
    images = ImageDataset(load_image_dataset(str(tmp_path)), resolution=16)
    with pytest.raises(DataError) as caught:
        check_readable(images, str(tmp_path))
    message = str(caught.value)
    assert "\n" not in message and str(tmp_path) in message and "None of the 4 images" in message
    assert "1 empty, 1 not_an_image, 2 truncated" in message
    with pytest.raises(DataError, match="4 unreadable images in a row .*1 empty, 1 not_an_image, 2 truncated"):
        images[0]  # what a loader worker meets if the check was skipped: still the reasons, not a bare OSError


def test_an_empty_data_set_fails_the_check(tmp_path):
    from datasets import Dataset, Image as ImageFeature

    empty = Dataset.from_dict({"image": []}).cast_column("image", ImageFeature())
    with pytest.raises(DataError, match="holds no images"):
        check_readable(ImageDataset(empty, resolution=16), "empty")


@pytest.mark.parametrize("files", [{}, {"notes.txt": b"no images here"}])
def test_a_folder_without_image_files_is_one_clear_data_error(tmp_path, files):
    for name, payload in files.items():
        (tmp_path / name).write_bytes(payload)
    with pytest.raises(DataError, match="folder without image files"):
        load_image_dataset(str(tmp_path))


def test_images_over_pils_bomb_limit_are_skipped_as_too_large(tmp_path, monkeypatch):
    Image.new("RGB", (24, 24), RED).save(tmp_path / "a_small.png")
    Image.new("RGB", (200, 200), BLUE).save(tmp_path / "b_bomb.png")
    Image.new("RGB", (24, 24), GREEN).save(tmp_path / "c_small.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)  # 40,000 pixels > 2 x limit: PIL's bomb error
    images = ImageDataset(load_image_dataset(str(tmp_path)), resolution=16, random_flip=False)
    tally = SkipTally()
    for batch in torch.utils.data.DataLoader(images, batch_size=3):
        tally.add(batch)
    assert tally.as_dict() == {"skipped_images": 1, "skipped/too_large": 1}
    assert images[1]["index"] == 2


def test_images_between_pils_warning_and_error_are_read_without_warnings(tmp_path, monkeypatch, recwarn):
    Image.new("RGB", (150, 100), BLUE).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)  # 15,000 pixels: PIL would warn, not refuse
    sample = ImageDataset(load_image_dataset(str(tmp_path)), resolution=16)[0]
    assert sample["skipped"] == 0 and sample["pixel_values"].shape == (3, 16, 16)
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]


def test_very_large_images_are_shrunk_in_pil_before_becoming_tensors(tmp_path, monkeypatch):
    import vqstack.data.images as images_module

    monkeypatch.setattr(images_module, "LARGE_IMAGE_PIXELS", 1_000_000)  # stands in for a 12000 x 12000 photo
    photo = np.zeros((2000, 3000, 3), dtype=np.uint8)
    photo[:, :1500] = RED  # left half red, right half blue: the centre crop keeps both
    photo[:, 1500:] = BLUE
    value = {"bytes": encoded(Image.fromarray(photo), "JPEG", quality=95), "path": None}
    assert decode(value, min_side=32).size == (375, 250), "a large JPEG decodes at 1/8 scale"
    assert decode(value).size == (3000, 2000), "without a target size it is read whole"
    (tmp_path / "photo.jpg").write_bytes(value["bytes"])
    (tmp_path / "photo.png").write_bytes(encoded(Image.fromarray(photo), "PNG"))
    images = ImageDataset(load_image_dataset(str(tmp_path)), resolution=16, random_flip=False)
    for index in range(2):
        pixels = (images[index]["pixel_values"] + 1) * 127.5
        assert pixels.shape == (3, 16, 16)
        assert pixels[:, :, :7].mean((1, 2)).tolist() == pytest.approx(RED, abs=16)
        assert pixels[:, :, 9:].mean((1, 2)).tolist() == pytest.approx(BLUE, abs=16)
    reduced = images_module.shrink(Image.new("RGB", (3000, 2000)), 16)
    assert reduced.size == (49, 33), "box-reduced by 2000 // 32 = 62 to a short side of at least 2 x resolution"


def test_extremely_elongated_images_are_cropped_before_resizing():
    from vqstack.data.images import ImageTransform

    strip = np.zeros((1, 100_000, 3), dtype=np.uint8)
    strip[0, 49_999:50_001] = GREEN  # the centre pixel is all the centre crop keeps
    pixels = ImageTransform(16)(Image.fromarray(strip))
    assert pixels.shape == (3, 16, 16)
    assert ((pixels.mean((1, 2)) + 1) * 127.5).tolist() == pytest.approx(GREEN, abs=1)


@pytest.mark.parametrize("error,reason", [
    (OSError("image file is truncated (12 bytes not processed)"), "truncated"),
    (OSError("Truncated File Read"), "truncated"),
    (OSError("broken data stream when reading image file"), "corrupt"),
    (SyntaxError("broken PNG file"), "corrupt"),
    (Image.DecompressionBombError("Image size exceeds limit"), "too_large"),
    (MemoryError(), "too_large"),
    (FileNotFoundError("No such file"), "other"),
])
def test_skip_reasons_from_errors(error, reason):
    assert skip_reason(error) == reason


def test_zero_bytes_in_shards_are_empty_not_unidentified():
    with pytest.raises(OSError) as caught:
        decode({"bytes": b"", "path": "00000.png"})  # webdataset keeps the member name as path
    assert skip_reason(caught.value) == "empty"
    with pytest.raises(OSError) as caught:
        decode(None)  # a row with no image at all
    assert skip_reason(caught.value) == "empty"
