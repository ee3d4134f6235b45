"""The error every failed model load becomes, defined below the modules that raise it.

``models`` (strict loading), ``hub_client`` (the Hub's errors, translated) and ``legacy``
(old checkpoints) all raise it, and callers catch this one type; ``dcgan_hf.models`` and
``dcgan_hf`` re-export it.
"""

from __future__ import annotations


class ModelLoadError(ValueError):
    """A model folder or repo that cannot be loaded as asked; the message says why."""
