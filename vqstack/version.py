"""The package version, in one place: pyproject.toml reads it, saved configs record it."""
__version__ = "0.1.0"
