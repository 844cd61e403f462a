"""Trained models -> pictures for people: generation (``Pipeline``, with inpainting and outpainting) and restoration
(``RestorePipeline``), with the image and file conversions they share."""
from .generation import Pipeline
from .restoration import RestorePipeline

__all__ = ["Pipeline", "RestorePipeline"]
