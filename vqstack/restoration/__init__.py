"""Image restoration with a tokenizer's codebook: degradations that make training inputs, the restorer's
objective, its saved folder (tied to one tokenizer), and the pipeline that restores users' images."""
from .degrade import STEPS, Degradation, parse_spec
from .objective import clean_targets, restoration_loss
from .files import image_pairs
from .pipeline import DEFAULT_FIDELITY, RestorePipeline, restore_files
from .saving import check_restorer_fits, load_restorer, save_restorer

__all__ = ["STEPS", "Degradation", "parse_spec", "clean_targets", "restoration_loss", "check_restorer_fits",
           "load_restorer", "save_restorer", "RestorePipeline", "DEFAULT_FIDELITY", "restore_files",
           "image_pairs"]
