"""The plugin module named by the ``vqstack`` entry point: hook implementations only."""
from vqstack.api import hookimpl


@hookimpl
def vqstack_register_priors(registry):
    # By reference: prior.py (torch, transformers) is imported when "maskgit" is first built, not to list plugins.
    registry.register("maskgit", "vqstack_maskgit.prior:MaskGITPrior")
