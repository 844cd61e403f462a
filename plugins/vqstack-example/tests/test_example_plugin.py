"""The example plugin's quantizer is registered through its entry point and passes vqstack's checks."""
import vqstack
from vqstack.api import check_component


def test_example_random_projection_conforms():
    assert "random-projection" in vqstack.components("quantizer")
    check_component("quantizer", "random-projection")


def test_example_codebook_is_frozen():
    q = vqstack.build("quantizer", "random-projection", dim=8, codebook_size=32)
    assert list(q.parameters()) == []  # the codebook is a buffer: nothing here trains
