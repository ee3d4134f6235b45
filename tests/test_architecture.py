"""The package keeps the shape ARCHITECTURE.md draws: every module in a layer, no import cycle,
no import of a higher layer, and functions and modules short enough to read (tools/layers.py)."""

from __future__ import annotations

import sys

from conftest import ROOT

sys.path.insert(0, str(ROOT / "tools"))
import layers  # noqa: E402


def test_every_module_has_a_layer_and_imports_only_its_own_or_lower_ones() -> None:
    edges = layers.graph()
    assert layers.unplaced(edges) == []
    assert layers.cycles(edges) == []
    assert layers.upward(edges) == []


def test_functions_and_modules_stay_short() -> None:
    assert layers.long_functions() == []
    assert layers.long_modules() == []


def test_old_module_paths_still_import_the_moved_modules() -> None:
    import importlib

    from dcgan_hf._moved import MOVED

    for old, new in MOVED.items():
        assert importlib.import_module(f"dcgan_hf.{old}") is importlib.import_module(f"dcgan_hf.{new}"), old
    from dcgan_hf.hub import HubPusher, load_generator  # packages that were modules: their names stay
    from dcgan_hf.models import SIZE_LIMITS, Discriminator, Generator, ModelLoadError, read_safetensors_header
    from dcgan_hf.serving import ModelServer, OutputFolder, parse_seed_list

    assert all((HubPusher, load_generator, SIZE_LIMITS, Discriminator, Generator, ModelLoadError,
                read_safetensors_header, ModelServer, OutputFolder, parse_seed_list))
