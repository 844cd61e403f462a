"""The module the ``vqstack`` entry point names: vqstack imports it and calls the hooks it implements."""
from vqstack.api import hookimpl
from vqstack_simvq.simvq import SimVQ


@hookimpl
def vqstack_register_quantizers(registry):
    registry.register("simvq", SimVQ)
