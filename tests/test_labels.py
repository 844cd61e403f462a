"""Labels: the --labels condition, and labels from a separate metadata file joined to an image folder by file
name."""
import hashlib
import json

import pytest

from helpers.recipes import write_image_folder
from vqstack.data import DataError, load_image_dataset
from vqstack.data.images import describe_source
from vqstack.data.labels import file_sha256, parse_labels, relabel


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture()
def tagged_folder(tmp_path):
    folder = write_image_folder(tmp_path / "images", count=4, size=8)
    write_jsonl(folder / "metadata.jsonl", [{"file_name": f"{i:03d}.png", "hair": "red"} for i in range(4)])
    return folder


def test_relabel_replaces_tags_by_file_name(tagged_folder, tmp_path):
    images = load_image_dataset(str(tagged_folder))
    names = [item["path"].rsplit("/", 1)[-1] for item in images.cast_column("image", __import__("datasets").Image(
        decode=False))["image"]]
    labels = write_jsonl(tmp_path / "labels.jsonl", [{"file_name": "002.png", "hair": "blue", "eyes": "green"},
                                                     {"file_name": "000.png", "hair": "pink", "eyes": None}])
    relabelled = relabel(images, labels)
    by_name = dict(zip(names, zip(relabelled["hair"], relabelled["eyes"])))
    assert by_name == {"000.png": ("pink", None), "001.png": (None, None), "002.png": ("blue", "green"),
                       "003.png": (None, None)}
    assert len(relabelled) == 4 and "image" in relabelled.column_names


def test_relabel_matches_file_names_with_folders(tmp_path):
    write_image_folder(tmp_path / "data" / "faces", count=2, size=8)
    labels = write_jsonl(tmp_path / "labels.jsonl", [{"file_name": "faces/001.png", "hair": "blue"}])
    relabelled = relabel(load_image_dataset(str(tmp_path / "data")), labels)
    assert set(relabelled["hair"]) == {"blue", None} and len(relabelled) == 2


@pytest.mark.parametrize("content, message", [
    ('{"file_name": "000.png"}\nnot json\n', r"labels.jsonl:2 is not JSON"),
    ('{"hair": "blue"}\n', "no 'file_name'"),
    ('{"file_name": "elsewhere.png", "hair": "blue"}\n', "No image matches"),
])
def test_bad_metadata_files_say_what_is_wrong(tagged_folder, tmp_path, content, message):
    (tmp_path / "labels.jsonl").write_text(content)
    with pytest.raises(DataError, match=message):
        relabel(load_image_dataset(str(tagged_folder)), tmp_path / "labels.jsonl")
    with pytest.raises(DataError, match="does not exist"):
        relabel(load_image_dataset(str(tagged_folder)), tmp_path / "missing.jsonl")



@pytest.mark.parametrize("text, expected", [
    (None, None), ("3", 3), ("-1", -1), (" 7 ", 7), ("blue hair,red eyes", "blue hair,red eyes"), ("cat", "cat"),
    ("3.5", "3.5"),
])
def test_parse_labels_reads_class_ids_and_passes_names_on(text, expected):
    assert parse_labels(text) == expected


def test_the_cli_and_vqstack_eval_read_labels_with_the_same_function():
    from vqstack import cli
    from vqstack.evaluation import command

    assert cli.parse_labels is parse_labels and command.parse_labels is parse_labels
    assert command.sample_labels("3;blue hair;") == [3, "blue hair", None]


def test_a_metadata_files_sha256_identifies_the_data(tagged_folder, tmp_path):
    metadata = tagged_folder / "metadata.jsonl"
    digest = hashlib.sha256(metadata.read_bytes()).hexdigest()
    assert file_sha256(metadata) == digest
    assert describe_source(str(tagged_folder)) == {"data": str(tagged_folder.resolve()), "metadata_sha256": digest}
    with pytest.raises(DataError, match="does not exist"):
        file_sha256(tmp_path / "missing.jsonl")
