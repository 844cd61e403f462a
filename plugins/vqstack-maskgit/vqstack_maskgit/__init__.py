"""vqstack-maskgit: the MaskGIT prior (Chang et al. 2022) as a vqstack plugin, registered as prior "maskgit"."""
from vqstack.api import lazy_exports

__all__ = ["MaskGITPrior", "SCHEDULES"]

# Imported on first use: vqstack imports this package to reach plugin.py, and torch and transformers should wait
# until the prior is built.
__getattr__, __dir__ = lazy_exports(__name__, {"MaskGITPrior": "prior", "SCHEDULES": "schedule"})
