"""Image restoration: degradations that make training inputs for a restorer (degraded image -> clean codes)."""
from .degrade import STEPS, Degradation, parse_spec

__all__ = ["STEPS", "Degradation", "parse_spec"]
