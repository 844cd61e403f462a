"""The module the ``vqstack`` entry point names: vqstack imports it and calls the hooks it implements."""
from vqstack.api import hookimpl


@hookimpl
def vqstack_register_quantizers(registry):
    # By reference: vqstack imports simvq.py (and torch) when "simvq" is first built, not when listing plugins.
    registry.register("simvq", "vqstack_simvq.simvq:SimVQ")
