"""Every ```python block of the README and docs/ runs as written, so a user copying one never meets an error.

The blocks of a page run in order, each in a fresh namespace, in a scratch folder laid out like a user's project:
what a block loads (a tokenizer and a prior under runs/, tagged faces in ../shared/data, a mask) is there, made by tiny
random models. They are untrained: only the code path is checked, no picture. A block whose first line names a
file (``# package/module.py``) is that file of a package: it is written there for later blocks to import, and a
written ``<package>/plugin.py`` is registered the way an installed entry point would be.
"""
import importlib
import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

import vqstack
from vqstack.restorers.saving import save_restorer
from helpers.recipes import ROOT, tiny_tokenizer_config

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
FILE_BLOCK = re.compile(r"^# ([\w/]+\.py)\n")


def python_blocks(page):
    """(line number, code) of each ```python block of a Markdown page."""
    text = page.read_text()
    return [(text.count("\n", 0, m.start()) + 2, m.group(1)) for m in BLOCK.finditer(text)]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A scratch project: tiny tokenizer and prior where the docs' commands leave trained ones, a face, a mask."""
    root = tmp_path_factory.mktemp("docs")
    project = root / "project"
    faces = root / "shared" / "data" / "anime-faces"
    faces.mkdir(parents=True)
    project.mkdir()
    rng = np.random.default_rng(0)
    hair = ["blue", "red", "blonde"]
    with (faces / "metadata.jsonl").open("w") as tags:  # tagged faces, as the attribute metrics need
        for i in range(2, 32):
            colour = np.array([[0, 0, 255], [255, 0, 0], [255, 220, 120]][i % 3], dtype=np.uint8)
            noise = rng.integers(0, 60, (96, 96, 3), dtype=np.uint8)
            Image.fromarray(colour - np.minimum(noise, colour)).save(faces / f"{i:05d}.jpg")
            tags.write(json.dumps({"file_name": f"{i:05d}.jpg", "hair": hair[i % 3]}) + "\n")
    mask = np.zeros((96, 96), dtype=np.uint8)
    mask[:32] = 255
    Image.fromarray(mask).save(project / "mask.png")
    torch.manual_seed(0)
    tokenizer = vqstack.Tokenizer.from_config(tiny_tokenizer_config())
    tokenizer.save_pretrained(project / "runs/anime-tiny/tokenizer")
    restorer = vqstack.build("restorer", "codeformer", tokenizer=tokenizer.config, image_size=16, width=32, depth=1,
                             heads=2)
    restorer.init_from_tokenizer(tokenizer)
    save_restorer(restorer, project / "runs/restore-anime/restorer", project / "runs/anime-tiny/tokenizer")
    for name, size in (("blurred.png", 16), ("small.png", 8)):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(project / name)
    prior = vqstack.build("prior", "ar", vocab_size=32, seq_len=16, dim=32, depth=1, heads=2,
                          attributes={"hair": ["blonde", "blue", "red"], "eyes": ["blue", "red"]})
    vqstack.save_component(prior, project / "runs/prior-anime/prior")
    # a translator (recipes/translate_anime.py --reference): line art and a reference read before the tokens
    translator = vqstack.build("prior", "ar", vocab_size=32, seq_len=16, dim=32, depth=1, heads=2,
                               attributes={"hair": ["blonde", "blue", "green", "red"], "eyes": ["blue", "red"]},
                               image_condition=vqstack.build("condition", "lineart").to_config(), patch_size=4,
                               grid=[4, 4], reference=True)
    vqstack.save_component(translator, project / "runs/translate64/prior")  # where docs/translation.md's run left it
    tokenizer.save_pretrained(project / "runs/small64/tokenizer")
    return project


def write_file_block(project, relative: str, code: str) -> None:
    path = project / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    for folder in path.relative_to(project).parents:
        if folder != folder.parent:
            (project / folder / "__init__.py").touch()
    path.write_text(code)
    if path.name == "plugin.py":
        module = importlib.import_module(".".join(path.relative_to(project).with_suffix("").parts))
        vqstack.register_plugin(module, name=path.parent.name)


@pytest.mark.parametrize("page", [p for p in PAGES if python_blocks(p)], ids=lambda p: p.name)
def test_python_blocks_run_as_written(page, project, fresh_plugins):
    fresh_plugins.chdir(project)
    fresh_plugins.syspath_prepend(str(project))
    for line, code in python_blocks(page):
        where = f"{page.relative_to(ROOT)}, block at line {line}"
        try:
            if match := FILE_BLOCK.match(code):
                write_file_block(project, match.group(1), code)
                continue
            namespace = {"__name__": "docs_block"}
            exec(compile(code, where, "exec"), namespace)
            for name, value in namespace.items():  # a block that is a plugin's test file: run its tests
                if name.startswith("test_") and callable(value):
                    value()
        except Exception as err:
            pytest.fail(f"{where} fails: {type(err).__name__}: {err}")


def test_the_runner_finds_the_blocks_users_copy():
    """Guards the runner itself: the README's and generation guide's Python examples are among the pages run."""
    names = {p.name for p in PAGES if python_blocks(p)}
    assert {"README.md", "generation.md", "plugins.md", "restoration.md", "translation.md"} <= names
    assert any("Pipeline.from_pretrained" in code for _, code in python_blocks(ROOT / "docs" / "generation.md"))
