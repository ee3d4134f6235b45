"""Agents can use it: ``python app.py --mcp`` (or ``DCGAN_MCP=1``) serves Gradio's MCP server.

Through the ``mcp`` client package over streamable HTTP on 127.0.0.1: the tools are listed
with typed, documented parameters; calling ``generate`` returns the library's grid as an
image, and ``interpolate`` goes through the same queue as the page. ``project`` is no tool
(Gradio's MCP layer would keep its own copy of the photo) but stays callable by gradio_client.
"""

from __future__ import annotations

import asyncio
import base64
import io
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
from PIL import Image

from dcgan_hf import Generator
from test_app import AppProcess, expected_grid, expected_strip, make_model_folder, start_app

import mcp  # noqa: E402  (requirements-test.txt installs it: a broken install must fail, not skip)
from mcp.client.streamable_http import streamable_http_client  # noqa: E402


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_folder(tmp_path_factory.mktemp("mcp") / "model")


@pytest.fixture(scope="module")
def app(model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppProcess]:
    process = start_app("--model", str(model), "--mcp", workdir=tmp_path_factory.mktemp("mcp-app"))
    yield process.wait_until_ready()
    process.stop()


def session_run(app: AppProcess, work: Any) -> Any:
    """Run ``work(session)`` in a fresh MCP session with the app."""

    async def main() -> Any:
        async with streamable_http_client(app.url + "gradio_api/mcp/") as (read, write, _):
            async with mcp.ClientSession(read, write) as session:
                await session.initialize()
                return await work(session)

    return asyncio.run(main())


def images_in(result: Any) -> list[np.ndarray]:
    assert not result.isError, result.content
    return [
        np.asarray(Image.open(io.BytesIO(base64.b64decode(item.data))).convert("RGB"))
        for item in result.content if item.type == "image"
    ]


def test_tools_are_listed_with_typed_documented_parameters(app: AppProcess) -> None:
    tools = {tool.name: tool for tool in session_run(app, lambda session: session.list_tools()).tools}
    # no project or complete_photo: photos stay out of MCP
    assert set(tools) == {"generate", "interpolate", "model_info", "edit", "sweep", "arithmetic", "complete"}
    generate = tools["generate"]
    assert "PNG grid" in generate.description
    properties = generate.inputSchema["properties"]
    assert set(properties) == {"seed", "n", "truncation"}
    assert properties["seed"]["type"] == "integer" and properties["n"]["type"] == "number"
    assert "0 to 4294967295" in properties["seed"]["description"] and "1 to 64" in properties["n"]["description"]
    walk = tools["interpolate"].inputSchema["properties"]
    assert walk["method"]["enum"] == ["slerp", "lerp"] and walk["closed"]["type"] == "boolean"
    assert "latent token" in walk["start_latent"]["description"]
    assert all(spec.get("description") for spec in [*properties.values(), *walk.values()])


def test_generate_returns_the_library_grid_as_an_image(app: AppProcess, model: Path) -> None:
    result = session_run(app, lambda session: session.call_tool("generate", {"seed": 3, "n": 4, "truncation": 1.0}))
    (grid,) = images_in(result)
    assert result.content[0].mimeType == "image/png"
    assert np.array_equal(grid, expected_grid(Generator.from_pretrained(model), [3, 4, 5, 6]))


def test_interpolate_and_bad_values_over_mcp(app: AppProcess, model: Path) -> None:
    arguments = {"seed_a": 5, "seed_b": 9, "more_seeds": "", "frames": 4, "method": "lerp", "closed": False,
                 "truncation": 1.0, "start_latent": "", "end_latent": ""}
    progress: list[float] = []

    async def with_progress(session: Any) -> Any:
        async def note(done: float, total: float | None, message: str | None) -> None:
            progress.append(done)

        return await session.call_tool("interpolate", arguments, progress_callback=note)

    strip, gif = images_in(session_run(app, with_progress))
    assert np.array_equal(strip, expected_strip(Generator.from_pretrained(model), [5, 9], 4, method="lerp"))
    assert gif.shape == (64, 64, 3) and progress
    # Without a progress token, Gradio 6.31 returns a two-file result as one text item (both URLs)
    plain = session_run(app, lambda session: session.call_tool("interpolate", arguments))
    assert not plain.isError and "-strip.png" in plain.content[0].text and ".gif" in plain.content[0].text
    bad = session_run(app, lambda session: session.call_tool("generate", {"seed": 1, "n": 500, "truncation": 1.0}))
    assert bad.isError and "number of images must be from 1 to 64" in str(bad.content)


def test_project_stays_callable_by_gradio_client_but_is_no_mcp_tool(app: AppProcess, tmp_path: Path) -> None:
    from gradio_client import Client, handle_file

    from test_app import write_photo

    client = Client(app.url, verbose=False, download_files=str(tmp_path / "downloads"))
    _, token, _ = client.predict(handle_file(write_photo(tmp_path)), api_name="/project")  # undocumented: positional
    assert token.startswith("z1.")


def test_dcgan_mcp_environment_variable_turns_it_on(model: Path, tmp_path: Path) -> None:
    process = start_app("--model", str(model), workdir=tmp_path, env={"DCGAN_MCP": "1"}).wait_until_ready()
    try:
        tools = session_run(process, lambda session: session.list_tools()).tools
        assert "generate" in {tool.name for tool in tools}
    finally:
        process.stop()


def test_steering_tools_edit_and_complete_over_mcp(app: AppProcess, model: Path) -> None:
    from dcgan_hf import sample

    tools = {tool.name: tool for tool in session_run(app, lambda session: session.list_tools()).tools}
    edit = tools["edit"].inputSchema["properties"]
    assert edit["seed"]["type"] == "integer" and "standard deviations" in edit["edit"]["description"]
    assert "brushed mask" in tools["complete"].inputSchema["properties"]["mask"]["description"]
    assert "Face arithmetic" in tools["arithmetic"].description

    async def with_progress(session: Any) -> Any:  # a two-item result comes back as items only with progress
        async def note(done: float, total: float | None, message: str | None) -> None:
            pass

        return await session.call_tool("edit", {"seed": 4, "truncation": 1.0, "latent": "", "edit": "0=2"},
                                       progress_callback=note)

    result = session_run(app, with_progress)
    (edited,) = images_in(result)
    assert any(item.type == "text" and "z1." in item.text for item in result.content)  # the latent token
    expected = sample(Generator.from_pretrained(model), [4], edit={0: 2})[0].permute(1, 2, 0).numpy()
    assert np.array_equal(edited, expected)
    bad = session_run(app, lambda session: session.call_tool(
        "complete", {"seed": 4, "truncation": 1.0, "latent": "", "mask": "chin"}))
    assert bad.isError and "unknown mask 'chin'" in str(bad.content)


def test_the_arithmetic_tool_reads_seeds_with_the_library_grammar(app: AppProcess) -> None:
    """tests/test_grammar.py's table through the MCP tool: the library's seeds or its message, word for word."""
    from dcgan_hf import latent_token
    from test_grammar import BAD, GOOD, arithmetic_seeds, library

    async def call_all(session: Any) -> list[Any]:
        async def note(done: float, total: float | None, message: str | None) -> None:
            pass

        return [await session.call_tool("arithmetic", {"expression": text, "truncation": 1.0, "noise_seed": 0},
                                        progress_callback=note) for text, _ in GOOD + BAD]

    for (text, expected), result in zip(GOOD + BAD, session_run(app, call_all)):
        texts = [item.text for item in result.content if item.type == "text"]
        if result.isError:
            got: object = " ".join(texts)
        else:
            token = next(item for item in texts if item.startswith(latent_token.PREFIX))
            got = arithmetic_seeds(token, expected, 100)
        wanted = library(text, 64, "group A")
        assert got == wanted or (isinstance(wanted, str) and wanted in got), (text, got)
