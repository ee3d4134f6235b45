"""One grammar for seeds: the same text means the same faces in every entry point.

The same table of inputs goes through the library (``parse_seeds``), the CLI
(``python -m dcgan_hf generate --seeds``, in-process and once as a real subprocess), the
demo's API handlers (``/arithmetic``'s groups, ``/interpolate``'s more seeds) and, in
tests/test_mcp.py, the ``arithmetic`` MCP tool of a running app. Each entry point must
give the library's seeds for good text and the library's message, word for word, for
bad text (each entry point names its field and has its own bound on the count).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest
import torch

from dcgan_hf import Generator, check_truncation, latent_token, latents, parse_seeds
from dcgan_hf.__main__ import main as cli_main
from dcgan_hf.latent import MAX_SEEDS
from dcgan_hf.serving import MAX_KEYFRAMES, ModelServer, OutputFolder
from dcgan_hf.serving.steering import MAX_GROUP_SEEDS
from dcgan_hf.serving.uploads import UploadLedger, UploadPolicy
from test_app import expected_strip, make_model_folder, pixels

GOOD = [
    ("1 2", [1, 2]),  # the CLI once read this as seed 12
    ("1,2", [1, 2]),
    ("3-5 9", [3, 4, 5, 9]),
    (" 7 ", [7]),
    ("1, 2  3", [1, 2, 3]),
    ("0-15 42", [*range(16), 42]),  # the CLI once read this as 1,543 seeds
    ("4294967295", [2**32 - 1]),
]
BAD = [
    ("5-3", "the range 5-3 in {name} runs backwards"),
    ("a-b", "{name} must be whole numbers and ranges like '0-15, 42', got 'a-b'"),
    ("1..3", "{name} must be whole numbers and ranges like '0-15, 42', got '1..3'"),
    ("1-x", "{name} must be whole numbers and ranges like '0-15, 42', got '1-x'"),
    ("4294967296", "{name}: a seed is a whole number from 0 to 4294967295, got 4294967296"),
    ("0-4294967295", "{name}: at most {limit:,} seeds at a time, 4,294,967,296 asked for"),
]
TRUNCATIONS = [(0.7, 0.7), (4, 4.0), (0, "truncation must be in (0, 4], got 0"),
               (float("nan"), "truncation must be a number such as 0.7 (1.0 = off), got nan"),
               ("0.7", "truncation must be a number such as 0.7 (1.0 = off), got '0.7'")]


def outcome(read: Callable[[str], list[int]], text: str) -> list[int] | str:
    """What an entry point makes of ``text``: its seeds, or its error message."""
    try:
        return read(text)
    except ValueError as error:
        return str(error)


def library(text: str, limit: int, name: str) -> list[int] | str:
    return outcome(lambda value: parse_seeds(value, limit=limit, name=name), text)


@pytest.mark.parametrize(("text", "seeds"), GOOD)
def test_the_library_reads_commas_spaces_and_ranges(text: str, seeds: list[int]) -> None:
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize(("text", "message"), BAD)
def test_each_mistake_has_one_message(text: str, message: str) -> None:
    assert library(text, MAX_SEEDS, "seeds") == message.format(name="seeds", limit=MAX_SEEDS)


@pytest.mark.parametrize(("value", "expected"), TRUNCATIONS)
def test_one_truncation_check(value: object, expected: float | str) -> None:
    assert outcome(check_truncation, value) == expected


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_folder(tmp_path_factory.mktemp("grammar") / "model")


def cli_seeds(model: Path, folder: Path, text: str) -> list[int]:
    """The seeds ``generate --seeds text --out folder/`` drew, read back from the file names."""
    import contextlib
    import io

    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        code = cli_main(["generate", "--model", str(model), "--seeds", text, "--out", f"{folder}/"])
    if code != 0:
        raise ValueError(stderr.getvalue().strip().removeprefix("error: "))
    return sorted(int(path.stem.removeprefix("seed")) for path in folder.glob("seed*.png"))


@pytest.mark.parametrize(("text", "expected"), GOOD + BAD)
def test_the_cli_agrees_with_the_library(model: Path, tmp_path: Path, text: str, expected: object) -> None:
    assert outcome(lambda value: cli_seeds(model, tmp_path / "out", value), text) == library(text, MAX_SEEDS, "--seeds")


def test_python_m_dcgan_hf_reads_1_2_as_two_seeds(model: Path, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "dcgan_hf", "generate", "--model", str(model), "--seeds", "1 2",
                           "--out", f"{tmp_path}/"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert sorted(path.name for path in tmp_path.glob("*.png")) == ["seed0000000001.png", "seed0000000002.png"]


@pytest.fixture(scope="module")
def handlers(model: Path, tmp_path_factory: pytest.TempPathFactory):
    """The app's API handlers in-process, over the same ModelServer app.py starts."""
    import app

    server = ModelServer.start(str(model), fallback=str(model), device="cpu")
    folder = tmp_path_factory.mktemp("grammar-out")
    uploads = UploadLedger(UploadPolicy())
    yield app.Demo(server, folder, uploads), app.SteeringHandlers(server, OutputFolder(folder), uploads)
    server.close()


def arithmetic_seeds(token: str, candidates: list[int], nz: int) -> list[int]:
    """``candidates`` if the result's token is their mean latent (one group: the mean is the result)."""
    mean = latents(candidates, nz).double().mean(0).float()
    return candidates if torch.allclose(latent_token.decode(token, nz), mean, atol=1e-2) else []


@pytest.mark.parametrize(("text", "expected"), GOOD + BAD)
def test_the_arithmetic_api_agrees_with_the_library(handlers, text: str, expected: object) -> None:
    _, steering = handlers

    def read(value: str) -> list[int]:
        _, token = steering.arithmetic(value, 1.0, 0)
        return arithmetic_seeds(token, expected, steering.nz)

    assert outcome(read, text) == library(text, MAX_GROUP_SEEDS, "group A")


@pytest.mark.parametrize(("text", "expected"), [*GOOD[:5], *BAD, ("", [])])
def test_the_interpolate_api_agrees_with_the_library(handlers, model: Path, text: str, expected: object) -> None:
    demo, _ = handlers
    generator = Generator.from_pretrained(model)

    seeds = expected if isinstance(expected, list) else []
    frames = 2 + len(seeds)

    def read(value: str) -> list[int]:
        strip, _ = demo.interpolate(0, 1, value, frames, "lerp", False, 1.0)
        drawn = expected_strip(generator, [0, 1, *seeds], frames, method="lerp")
        return expected if (pixels(strip) == drawn).all() else []

    wanted = [] if not text else library(text, MAX_KEYFRAMES - 2, "more seeds")  # more seeds are optional
    assert outcome(read, text) == wanted
