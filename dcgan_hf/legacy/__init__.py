"""Checkpoints from before this package: the PyTorch DCGAN tutorial's and the examples repo's
pickles, read safely (:mod:`.reader`: ``weights_only=True``, bounded) and converted to Hub
folders (:mod:`.convert`: ``python -m dcgan_hf convert``)."""

from .._lazy import by_module, exports

_EXPORTS = by_module(
    reader="UnsafeCheckpointError LegacyCheckpoint read_checkpoint read_legacy read_legacy_file normalise_keys "
           "build_generator build_discriminator",
    convert="convert write_hub_folders",
)
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = exports(__name__, _EXPORTS)
