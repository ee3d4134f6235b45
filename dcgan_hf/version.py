"""The library's version, importable from the bottom layer (the weights' metadata records it)."""

__version__ = "0.1.0"  # keep in step with pyproject.toml
