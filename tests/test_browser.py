"""The demo in a real browser: Debian's chromium driven by Playwright, against app.py
launched on 127.0.0.1.

The page must show exactly the API's pixels for a seed (the image is fetched from the
page's own <img> src), download the same PNG, play a GIF with the requested frame count,
and run its examples and random-seed button. Screenshots are saved to a temporary folder
and copied to ``$DCGAN_SCREENSHOT_DIR`` when it is set (CI keeps them as artifacts).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from dcgan_hf.images import gif_frame_count
from test_app import AppProcess, client_for, make_model_folder, pixels, start_app

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
WAIT_MS = 60_000  # a busy 2-core machine can take a while to render and serve

if not CHROMIUM.exists():
    pytest.skip(
        "Debian chromium is not installed (apt-get install -y chromium chromium-driver)", allow_module_level=True
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppProcess]:
    workdir = tmp_path_factory.mktemp("browser-app")
    model = make_model_folder(workdir / "dcgan-test")
    process = start_app("--model", str(model), workdir=workdir)
    yield process.wait_until_ready()
    process.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator["sync_api.Browser"]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: "sync_api.Browser", app: AppProcess) -> Iterator["sync_api.Page"]:
    context = browser.new_context(viewport={"width": 1280, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(app.url)
    page.get_by_role("button", name="Generate", exact=True).wait_for()
    yield page
    context.close()


def save_screenshot(page: "sync_api.Page", folder: Path, name: str) -> Path:
    path = folder / name
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("DCGAN_SCREENSHOT_DIR"):
        target = Path(os.environ["DCGAN_SCREENSHOT_DIR"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target / name)
    return path


def set_slider(page: "sync_api.Page", elem_id: str, value: int) -> None:
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def shown_image(page: "sync_api.Page", elem_id: str, name_part: str) -> bytes:
    """The bytes behind the page's <img> once it shows a file whose name contains ``name_part``."""
    image = page.locator(f"#{elem_id} img[src*='{name_part}']")
    image.wait_for()
    return page.request.get(image.get_attribute("src")).body()


def download(page: "sync_api.Page", elem_id: str, expected: bytes) -> bytes:
    """What a download button hands over, once it equals ``expected`` (or the wait runs out).

    The button is filled by a follow-up event just after the image appears, so the first
    click may find it empty or one result behind.
    """
    deadline = time.monotonic() + WAIT_MS / 1000
    while True:
        try:
            with page.expect_download(timeout=5_000) as event:
                page.locator(f"#{elem_id}").click()
            data = Path(event.value.path()).read_bytes()
            if data == expected or time.monotonic() > deadline:
                return data
        except sync_api.TimeoutError:
            if time.monotonic() > deadline:
                raise
        page.wait_for_timeout(200)


def test_generated_image_in_the_page_equals_the_api_result(
    page: "sync_api.Page", app: AppProcess, tmp_path: Path
) -> None:
    page.get_by_label("seed", exact=True).fill("31337")
    set_slider(page, "count", 4)
    page.get_by_role("button", name="Generate", exact=True).click()
    shown = shown_image(page, "grid", "seed31337-n4-")
    save_screenshot(page, tmp_path, "generate.png")

    from_api = client_for(app, tmp_path / "api").predict(seed=31337, n=4, truncation=1.0, api_name="/generate")
    assert np.array_equal(pixels(shown), pixels(from_api))
    assert pixels(shown).shape == (134, 134, 3)  # 2×2 tiles of 64 px with a 2 px border
    assert download(page, "grid-download", expected=shown) == shown


def test_interpolation_in_the_page_plays_the_requested_frames(page: "sync_api.Page", tmp_path: Path) -> None:
    page.get_by_role("tab", name="Interpolate").click()
    page.get_by_label("seed A", exact=True).fill("3")
    page.get_by_label("seed B", exact=True).fill("8")
    set_slider(page, "frames", 9)
    page.get_by_role("button", name="Interpolate", exact=True).click()
    gif = shown_image(page, "gif", "interp-3-8-9f-")  # the animation as the page shows it
    assert gif.startswith(b"GIF8") and gif_frame_count(gif) == 9
    assert pixels(shown_image(page, "strip", "interp-3-8-9f-")).shape == (68, 9 * 66 + 2, 3)
    save_screenshot(page, tmp_path, "interpolate.png")
    assert download(page, "gif-download", expected=gif) == gif


def test_examples_and_the_random_seed_button_generate(page: "sync_api.Page") -> None:
    page.get_by_text("2024", exact=True).click()  # the 64-image example (a row of the examples table)
    example = shown_image(page, "grid", "seed2024-n64-t0.7")
    assert pixels(example).shape == (530, 530, 3)  # 8×8 tiles
    assert page.get_by_label("seed", exact=True).input_value() == "2024"
    assert download(page, "grid-download", expected=example) == example  # follows whatever fills the grid

    page.get_by_role("button", name="Random seed").click()
    page.wait_for_function("() => document.querySelector('#seed input').value !== '2024'")
    seed = page.get_by_label("seed", exact=True).input_value()
    assert shown_image(page, "grid", f"seed{seed}-n64-").startswith(b"\x89PNG")
