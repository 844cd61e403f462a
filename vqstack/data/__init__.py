"""Data loading: images for the tokenizer (and, later, token datasets for the prior)."""
from .images import DataError, ImageDataset, ImageTransform, image_column, load_image_dataset, to_rgb

__all__ = ["DataError", "ImageDataset", "ImageTransform", "image_column", "load_image_dataset", "to_rgb"]
