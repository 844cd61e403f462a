"""The plugin module named by the ``vqstack`` entry point: hook implementations only."""
import logging

import vqstack

from .random_projection import RandomProjectionQuantizer

log = logging.getLogger(__name__)


@vqstack.hookimpl
def vqstack_register_quantizers(registry):
    registry.register("random-projection", RandomProjectionQuantizer)


@vqstack.hookimpl
def vqstack_on_step_end(step, logs):
    log.debug("step %d: %s", step, logs)
