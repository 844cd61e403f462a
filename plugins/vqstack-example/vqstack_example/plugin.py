"""The plugin module named by the ``vqstack`` entry point: hook implementations only."""
import logging

import vqstack

log = logging.getLogger(__name__)


@vqstack.hookimpl
def vqstack_register_quantizers(registry):
    # By reference: random_projection.py (and torch) is imported when the quantizer is first built, so listing
    # plugins (`vqstack plugins`) stays fast.
    registry.register("random-projection", "vqstack_example.random_projection:RandomProjectionQuantizer")


@vqstack.hookimpl
def vqstack_on_step_end(step, logs):
    log.debug("step %d: %s", step, logs)
