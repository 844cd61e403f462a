"""Trained models -> pictures for people: generation (``Pipeline``, with inpainting and outpainting), restoration
(``RestorePipeline``) and translation (``TranslatePipeline``: a drawing or photo painted by a translator, and faces
re-styled without a mask), with the image and file conversions they share."""
from .generation import Pipeline
from .restoration import RestorePipeline
from .translation import EditResult, TranslatePipeline

__all__ = ["Pipeline", "RestorePipeline", "TranslatePipeline", "EditResult"]
