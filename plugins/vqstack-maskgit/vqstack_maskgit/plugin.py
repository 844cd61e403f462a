"""The plugin module named by the ``vqstack`` entry point: hook implementations only."""
from vqstack.api import hookimpl

from .prior import MaskGITPrior


@hookimpl
def vqstack_register_priors(registry):
    registry.register("maskgit", MaskGITPrior)
