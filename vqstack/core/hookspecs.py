"""Every hook vqstack calls, in one place.

Registration hooks receive a :class:`~vqstack.core.registry.Registry` for one component kind and call
``registry.register(name, factory)``. Built-in components register through these same hooks.

Training hooks only observe: their return values are ignored and they must not change what they are given.
"""
import pluggy

PROJECT = "vqstack"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# --- registration: one hook per component kind -------------------------------------------------------------


@hookspec
def vqstack_register_encoders(registry):
    """Register encoders: modules mapping images (B, 3, H, W) to features (B, out_channels, H/f, W/f).

    An encoder exposes ``out_channels`` and ``downsample`` (f)."""


@hookspec
def vqstack_register_decoders(registry):
    """Register decoders: modules mapping features (B, in_channels, H/f, W/f) to images (B, 3, H, W).

    A decoder exposes ``in_channels`` and ``upsample`` (f)."""


@hookspec
def vqstack_register_quantizers(registry):
    """Register quantizers: modules mapping z (B, D, H, W) to a :class:`vqstack.QuantizerOutput`.

    A quantizer exposes ``dim``, ``codebook_size`` and ``indices_to_codes(indices)``, and builds from ``dim=`` alone."""


@hookspec
def vqstack_register_discriminators(registry):
    """Register discriminators: modules mapping images (B, 3, H, W) to real/fake logits."""


@hookspec
def vqstack_register_perceptual_losses(registry):
    """Register perceptual losses: modules mapping two image batches in [-1, 1] to a per-sample distance (B,)."""


@hookspec
def vqstack_register_priors(registry):
    """Register priors: token models with ``generate(n, labels=..., cfg_scale=..., ...)`` -> long (n, seq_len)."""


@hookspec
def vqstack_register_features(registry):
    """Register feature networks for Fréchet distances and precision/recall: frozen modules mapping images
    (B, 3, H, W) in [-1, 1] to features (B, num_features) float, resizing and normalising inside.

    A feature network exposes ``num_features`` (int) and ``description`` (str: the network and its weights, which
    evaluation reports record); :class:`vqstack.evaluation.FeatureNetwork` is a base class doing the freezing."""


@hookspec
def vqstack_register_restorers(registry):
    """Register restorers: modules mapping degraded images (B, 3, S, S) in [-1, 1] to a
    :class:`vqstack.RestorerOutput` (code logits (B, codebook_size, h, w), features (B, dim, h, w)) for one
    tokenizer, whose frozen codebook and decoder draw the restored image.

    A restorer builds from ``tokenizer=`` (the tokenizer's config) and ``image_size=``, subclasses
    :class:`vqstack.Restorer` (``codebook_size``, ``dim``, ``image_size``, ``downsample``, ``grid``) and may copy the
    tokenizer's weights in ``init_from_tokenizer(tokenizer)``."""


@hookspec
def vqstack_register_conditions(registry):
    """Register conditions: modules mapping images (B, 3, H, W) in [-1, 1] to condition images (B, channels, H, W)
    in [-1, 1] of the same size (line art, grayscale, a low-resolution copy), which an image-to-image prior reads
    before the image tokens.

    A condition subclasses :class:`vqstack.Condition`: it sets ``channels``, implements
    ``convert(images, generator)`` drawing any random choice from ``generator`` (so ``sample(image, index, epoch)``
    is reproducible in every data-loader worker), builds with defaults for all its arguments and keeps each under
    its own name (``config`` / ``to_config()`` read them back, for a prior to record)."""


# --- training: observe only ---------------------------------------------------------------------------------


@hookspec
def vqstack_on_train_start(config, accelerator):
    """Called once on every process before the first training step; ``config`` is the run's settings (a dict)."""


@hookspec
def vqstack_on_step_end(step, logs):
    """Called on every process after each optimizer step; ``logs`` maps names to floats (losses, usage, ...).

    ``logs`` is a read-only mapping whose values are converted to floats when first read, so an observer that
    reads nothing costs no device-to-host copy."""


@hookspec
def vqstack_on_validation_end(step, metrics):
    """Called on the main process after an evaluation (training evaluates there only, once per evaluation step);
    ``metrics`` maps names to floats."""


@hookspec
def vqstack_on_checkpoint_saved(step, path):
    """Called on every process after a checkpoint directory ``path`` is complete."""
