"""benchmarks/translation_compare.py's line art "made another way": PIL's FIND_EDGES, thresholded."""
import importlib.util

import torch

from helpers.recipes import ROOT


def load():
    spec = importlib.util.spec_from_file_location("translation_compare", ROOT / "benchmarks" / "translation_compare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pil_edges_draw_black_lines_on_white_where_the_face_changes():
    compare = load()
    flat = torch.zeros(3, 32, 32)
    assert torch.equal(compare.pil_edges(flat), torch.ones(1, 32, 32))  # nothing to draw: white paper
    step = -torch.ones(3, 32, 32)
    step[:, :, 16:] = 1.0  # dark left half, white right half
    lines = compare.pil_edges(step)
    assert lines.shape == (1, 32, 32) and set(lines.unique().tolist()) == {-1.0, 1.0}
    ink = (lines[0] < 0).nonzero()
    assert set(ink[:, 1].tolist()) <= {14, 15, 16, 17}  # one line, along the edge (smoothed: within 2 px)
    assert (lines[0, 1:-1, 14:18] < 0).any(1).all()  # down its whole length, not the frame FIND_EDGES leaves
    assert (lines[0, [0, -1]] > 0).all() and (lines[0, :, [0, -1]] > 0).all()
