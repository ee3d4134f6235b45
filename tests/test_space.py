"""Space-ready: README.md's front matter read by huggingface_hub as a Space card, the
requirements a Space installs, and the ``spaces.GPU`` wiring a ZeroGPU Space uses.

A Space installs ``gradio==sdk_version`` itself and then ``requirements.txt``, so the two
must agree; ZeroGPU Spaces come with ``spaces`` preinstalled, so it must not be pinned.
The wiring test runs app.py's ``build_demo`` under a stand-in ``spaces`` module (a package
we cannot install here) and checks every model call is wrapped with its stated duration.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import gradio
import huggingface_hub
from huggingface_hub import SpaceCard, SpaceCardData
from huggingface_hub.utils import validate_repo_id
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from conftest import ROOT
from test_app import make_model_folder


def space_card() -> SpaceCard:
    return SpaceCard.load(ROOT / "README.md")


def requirements() -> dict[str, Requirement]:
    found = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            found[requirement.name.lower().replace("_", "-")] = requirement
    return found


def test_the_front_matter_is_a_valid_space_card() -> None:
    data = space_card().data
    assert isinstance(data, SpaceCardData)
    assert data.sdk == "gradio" and data.app_file == "app.py" and (ROOT / data.app_file).is_file()
    assert Version(data.sdk_version) == Version(gradio.__version__)  # the version the tests ran
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert data.license == project["license"].lower()
    assert Version(data.python_version + ".0") in SpecifierSet(project["requires-python"])
    assert re.fullmatch(r"3\.\d+", data.python_version)
    for repo_id in data.models:
        validate_repo_id(repo_id)
    assert data.suggested_hardware in {hardware.value for hardware in huggingface_hub.SpaceHardware}
    assert 0 < len(data.short_description) <= 60  # the Hub's limit
    assert data.colorFrom in {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}
    assert data.colorTo in {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}
    # what huggingface_hub writes back is what we wrote
    assert SpaceCardData(**data.to_dict()).to_dict() == data.to_dict()


def test_the_requirements_install_on_a_space() -> None:
    data, needed = space_card().data, requirements()
    assert needed["gradio"].specifier.contains(data.sdk_version)  # the Space's own gradio satisfies ours
    assert "spaces" not in needed  # preinstalled on ZeroGPU; a pin could fight it
    for name in ("torch", "huggingface-hub", "safetensors", "pillow", "numpy"):
        assert name in needed, name
    assert needed["huggingface-hub"].specifier.contains(huggingface_hub.__version__)
    assert "mcp" not in needed  # optional: the [mcp] extra / requirements-test.txt


def test_every_model_call_is_wrapped_with_a_duration_that_fits_it(tmp_path: Path) -> None:
    """The stub is called the way ZeroGPU calls a duration: with the call's own arguments."""
    stub = tmp_path / "stub" / "spaces"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text(
        "CALLS = {}\n"
        "def GPU(task=None, *, duration=60):\n"
        "    def wrap(fn):\n"
        "        CALLS[getattr(fn, '__name__', repr(fn))] = duration\n"
        "        return fn\n"
        "    return wrap(task) if callable(task) else wrap\n"
    )
    model = make_model_folder(tmp_path / "model")
    script = (
        "import json, spaces, app\n"
        "from dcgan_hf.serving import ModelServer\n"
        f"server = ModelServer.start({str(model)!r}, device='cpu')\n"
        f"demo = app.build_demo(server, {str(tmp_path / 'out')!r})\n"
        "server.close()\n"
        "args = {'training_grid': (3, [0, 1], 1.0), 'training_walk': (7, 1.0)}\n"
        "print(json.dumps({name: duration(*args.get(name, (None,))) for name, duration in spaces.CALLS.items()}))\n"
        "options = app.launch_options(demo, False, app.GuardSettings(), app.UploadLedger())\n"
        "print(json.dumps({'ssr_mode': options['ssr_mode']}))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": f"{stub.parent}:{ROOT}"})
    assert result.returncode == 0, result.stderr[-3000:]
    *_, durations, options = result.stdout.strip().splitlines()
    assert json.loads(options) == {"ssr_mode": False}  # pinned: see app.launch_options
    seconds = json.loads(durations)
    assert seconds == {"generate": 10, "interpolate": 10, "project": 15, "training_grid": 10, "training_walk": 10,
                       "edit": 10, "sweep": 10, "arithmetic": 10, "walk_latent": 10, "complete": 15}


def test_training_tab_calls_ask_for_time_only_for_the_generators_they_must_load() -> None:
    from dcgan_hf import Generator
    from dcgan_hf.serving import gpu_time
    from dcgan_hf.revisions import TrainingHistory, TrainingRevision

    revisions = [TrainingRevision(epoch=epoch, source=f"run/epoch-{epoch}") for epoch in range(1, 41)]
    history = TrainingHistory.of(revisions, "run", capacity=4, load=lambda revision: Generator(nz=8, ngf=8))
    every = gpu_time.durations(history, lambda h: list(h.revisions))
    assert every["training_walk"](0, 1.0) == gpu_time.START_S + 40 * gpu_time.LOAD_S  # nothing loaded yet: 90 s
    assert every["training_grid"](5, [0], 1.0) == gpu_time.START_S + gpu_time.LOAD_S
    for revision in revisions[-4:]:
        history.generator(revision)
    assert every["training_grid"](40, [0], 1.0) == gpu_time.START_S  # in memory: no load to wait for
    assert every["training_walk"](0, 1.0) == gpu_time.START_S + 36 * gpu_time.LOAD_S
    assert every["training_grid"](10**9, [0], 1.0) == gpu_time.START_S  # the last epoch before it
    many = [TrainingRevision(epoch=epoch, source=f"run/epoch-{epoch}") for epoch in range(1, 301)]
    huge = TrainingHistory.of(many, "run", load=lambda revision: Generator(nz=8, ngf=8))
    assert gpu_time.durations(huge, lambda h: list(h.revisions))["training_walk"](0, 1.0) == gpu_time.MAX_S
