"""Old module paths keep working: ``import dcgan_hf.hub_client`` is ``dcgan_hf.hub.client``.

The flat modules of 0.1 moved into subpackages by concern (ARCHITECTURE.md). Code outside
this package may still import them by their old names, so a finder on ``sys.meta_path``
answers each old name with the moved module itself (the same object: attributes, monkey-
patches and ``isinstance`` checks all agree). Nothing inside dcgan_hf uses the old names.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Sequence

# old name → where it lives now (both under dcgan_hf)
MOVED = {
    "hf_datasets": "data.hf_datasets",
    "image_cache": "data.image_cache",
    "decoding": "data.decoding",
    "hub_client": "hub.client",
    "card": "hub.card",
    "convert": "legacy.convert",
    "steering": "serving.steering",
    "page_state": "serving.page_state",
    "route_guard": "serving.route_guard",
    "uploads": "serving.uploads",
    "api_calls": "serving.api_calls",
    "live": "serving.live",
}


class _Alias(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: ModuleSpec) -> ModuleType:
        return importlib.import_module(self.target)

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the moved module was executed under its own name."""


class MovedModules(importlib.abc.MetaPathFinder):
    """Finds ``dcgan_hf.<old>`` for each old name in :data:`MOVED`."""

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        package, _, name = fullname.rpartition(".")
        if package != __package__ or name not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, _Alias(f"{__package__}.{MOVED[name]}"))


def install() -> None:
    """Put the finder on ``sys.meta_path`` once (importing dcgan_hf twice must not add two)."""
    if not any(isinstance(finder, MovedModules) for finder in sys.meta_path):
        sys.meta_path.insert(0, MovedModules())  # before path finders (an editable install of an older checkout)
