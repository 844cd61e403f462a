"""SimVQ for vqstack: a frozen random codebook moved as a whole by one learned linear layer."""
from vqstack.api import lazy_exports

__all__ = ["SimVQ"]

# Imported on first use: vqstack imports this package to reach plugin.py, and torch should wait until SimVQ is built.
__getattr__, __dir__ = lazy_exports(__name__, {"SimVQ": "simvq"})
