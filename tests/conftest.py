import os

# Nothing in the suite may reach the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# Caches the suite writes (attribute classifiers) go to a folder of its own, never the user's ~/.cache/vqstack.
if "VQSTACK_CACHE" not in os.environ:
    import tempfile

    os.environ["VQSTACK_CACHE"] = tempfile.mkdtemp(prefix="vqstack-test-cache-")

import pytest  # noqa: E402
import torch  # noqa: E402

import vqstack.core  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def fresh_plugins(monkeypatch):
    """A plugin manager built anew for the test (re-reading the environment) and discarded after it."""
    vqstack.core.reset()
    yield monkeypatch
    vqstack.core.reset()


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs CUDA; skipped without it (run with -m gpu on a GPU machine)")
    config.addinivalue_line("markers", "slow: long real-data or subprocess tests; CI runs them, "
                                       "-m 'not slow' leaves them out of a quick local run")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
