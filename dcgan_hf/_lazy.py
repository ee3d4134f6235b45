"""Lazy re-exports for a subpackage's ``__init__``: ``dcgan_hf.hub.load_generator`` works
without importing every module of ``dcgan_hf.hub`` first.

A package's ``__init__`` that imported its modules eagerly would tie their layers together:
``dcgan_hf.models`` needs ``dcgan_hf.hub.client`` (the transport), while
``dcgan_hf.hub.loading`` needs ``dcgan_hf.models``, so importing the client must not import
the loader. PEP 562's module ``__getattr__`` resolves each name on first use instead.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping


def exports(package: str, names: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``, which re-exports ``names`` (name → its module)."""

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{names[name]}"), name)

    def __dir__() -> list[str]:
        return sorted(names)

    return __getattr__, __dir__


def by_module(**modules: str) -> dict[str, str]:
    """``by_module(loading="A B", pusher="C")`` → {"A": "loading", "B": "loading", "C": "pusher"}."""
    return {name: module for module, text in modules.items() for name in text.split()}
