"""SimVQ for vqstack: a frozen random codebook moved as a whole by one learned linear layer."""
from .simvq import SimVQ

__all__ = ["SimVQ"]
