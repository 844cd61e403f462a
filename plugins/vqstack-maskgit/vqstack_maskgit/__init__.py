"""vqstack-maskgit: the MaskGIT prior (Chang et al. 2022) as a vqstack plugin, registered as prior "maskgit"."""
from .prior import MaskGITPrior
from .schedule import SCHEDULES

__all__ = ["MaskGITPrior", "SCHEDULES"]
