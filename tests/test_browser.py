"""The demo in a real browser: Debian's chromium driven by Playwright, against app.py
launched on 127.0.0.1.

1. Faces on first paint: the gallery and the walk are there without a click, and the first
   face image is loaded within 3 s of navigation (measured here).
2. The gallery: tiles captioned with their seeds, each the API's pixels; clicking one
   offers seed A / seed B / show larger; the page state goes into the URL, and opening the
   copied link in a new page shows byte-identical images.
3. Watch it learn: an app serving a repo that train.py pushed 3 tagged epochs to shows the
   Training tab; each epoch's grid is ``Generator.from_pretrained(repo, revision=tag)``'s.
4. Your face: upload a photo, see the crop, the reconstruction and the loss, and walk from
   that face; a non-image upload gets an error and the page keeps working.
5. Steer the faces: a gallery tile opens in the Edit tab, a slider moves it (the library's
   pixels), the edit goes into the URL and the link redraws it; the Complete tab's brush
   paints a mask that travels as text; the Arithmetic tab's gallery fills a group by a click.

Screenshots are saved to a temporary folder and copied to ``$DCGAN_SCREENSHOT_DIR`` when it
is set (CI keeps them as artifacts).
"""

from __future__ import annotations

import base64
import os
import shutil
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from dcgan_hf import Generator, latent_token, render
from dcgan_hf.images import gif_frame_count, grid_image
from dcgan_hf.photos import load_photo
from hostile_images import encoded, face_like
from hub_server import HubServer
from test_app import AppProcess, client_for, make_model_folder, pixels, start_app, tile
from training_runs import train_and_push

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
# faces come without a click; HOW FAST (the 3 s target) is bench/first_paint.py's to measure, so this
# bound only catches a page that hangs, with room for a loaded 2-core machine
FIRST_PAINT_BOUND_S = 30.0
TRAINED_REPO = "someone/dcgan-browser"

if not CHROMIUM.exists():
    pytest.skip(
        "Debian chromium is not installed (apt-get install -y chromium chromium-driver)", allow_module_level=True
    )
from playwright import sync_api  # noqa: E402  (requirements-test.txt installs it)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_folder(tmp_path_factory.mktemp("browser-model") / "dcgan-test")


@pytest.fixture(scope="module")
def app(model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppProcess]:
    process = start_app("--model", str(model), workdir=tmp_path_factory.mktemp("browser-app"))
    yield process.wait_until_ready()
    process.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator["sync_api.Browser"]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def context(browser: "sync_api.Browser") -> Iterator["sync_api.BrowserContext"]:
    context = browser.new_context(viewport={"width": 1280, "height": 1000}, accept_downloads=True)
    context.set_default_timeout(WAIT_MS)
    yield context
    context.close()


def open_page(context: "sync_api.BrowserContext", url: str) -> "sync_api.Page":
    page = context.new_page()
    page.goto(url)
    page.get_by_role("button", name="Generate", exact=True).wait_for()
    return page


def save_screenshot(page: "sync_api.Page", folder: Path, name: str) -> Path:
    path = folder / name
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("DCGAN_SCREENSHOT_DIR"):
        target = Path(os.environ["DCGAN_SCREENSHOT_DIR"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target / name)
    return path


def set_number(page: "sync_api.Page", elem_id: str, value: int | str) -> None:
    """Type into a slider's number box or a number field, and confirm with Enter."""
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def image_bytes(page: "sync_api.Page", selector: str) -> bytes:
    """The bytes behind an <img> (as the browser fetched it), once it is there."""
    image = page.locator(selector).first
    image.wait_for(state="attached")  # it may sit in a tab that is not shown
    return page.request.get(image.get_attribute("src")).body()


def tile_bytes(page: "sync_api.Page", seed: int) -> bytes:
    return image_bytes(page, f"#gallery img[alt='seed {seed}']")


def download(page: "sync_api.Page", elem_id: str, expected: bytes) -> bytes:
    """What a download button hands over, once it equals ``expected`` (or the wait runs out).

    The button may be filled by a follow-up event just after the image appears, so the first
    click may find it one result behind.
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


def sample_pixels(model: Path, seed: int) -> np.ndarray:
    return Generator.from_pretrained(model).sample([seed])[0].permute(1, 2, 0).numpy()


# -- 1. faces on first paint ------------------------------------------------------------------


def test_faces_on_first_paint(context: "sync_api.BrowserContext", app: AppProcess, model: Path,
                              tmp_path: Path) -> None:
    page = context.new_page()
    started = time.monotonic()
    page.goto(app.url, wait_until="commit")
    page.wait_for_function(
        "() => { const img = document.querySelector('#gallery img');"
        " return img !== null && img.complete && img.naturalWidth > 0; }",
        polling=20,
    )
    first_face = time.monotonic() - started
    page.locator("#walk-preview img").wait_for()  # the default walk moves on the first view too
    save_screenshot(page, tmp_path, "1-first-paint.png")
    print(f"navigation → first face image: {first_face:.2f} s")
    assert first_face <= FIRST_PAINT_BOUND_S, f"first face after {first_face:.2f} s"
    # no click happened: the defaults (seeds 42…57, walk 1 → 2) are on the page
    assert page.locator("#gallery img").count() == 16
    assert np.array_equal(pixels(tile_bytes(page, 42)), sample_pixels(model, 42))
    gif = image_bytes(page, "#walk-preview img")
    assert gif.startswith(b"GIF8") and gif_frame_count(gif) == 24
    page.get_by_role("tab", name="Interpolate").click()  # the full walk was rendered before the click too
    assert image_bytes(page, "#gif img") == gif
    page.get_by_role("tab", name="Generate").click()
    api_grid = Path(client_for(app, tmp_path / "api").predict(seed=42, n=16, truncation=1.0,
                                                                 api_name="/generate")).read_bytes()
    assert download(page, "grid-download", expected=api_grid) == api_grid


# -- 2. the gallery and links ---------------------------------------------------------------------


def test_gallery_tiles_actions_and_a_link_that_reproduces_the_page(
    context: "sync_api.BrowserContext", app: AppProcess, model: Path, tmp_path: Path
) -> None:
    page = open_page(context, app.url)
    page.get_by_label("seed", exact=True).fill("31337")
    set_number(page, "count", 4)
    page.get_by_role("button", name="Generate", exact=True).click()
    page.locator("#gallery img[alt='seed 31340']").wait_for()
    assert page.locator("#gallery img").count() == 4
    assert page.get_by_text("seed 31338", exact=True).is_visible()  # the caption
    tiles = {seed: tile_bytes(page, seed) for seed in range(31337, 31341)}
    for seed, data in tiles.items():
        assert np.array_equal(pixels(data), sample_pixels(model, seed)), seed
    api_grid = Path(client_for(app, tmp_path / "api").predict(seed=31337, n=4, truncation=1.0,
                                                                 api_name="/generate")).read_bytes()
    assert download(page, "grid-download", expected=api_grid) == api_grid  # the grid PNG stays

    page.locator("#gallery img[alt='seed 31339']").click()
    page.get_by_text("seed 31339", exact=True).last.wait_for()
    page.get_by_role("button", name="Show larger").click()
    assert image_bytes(page, "#larger img") == tiles[31339]
    page.get_by_role("button", name="Use as seed A").click()
    page.locator("#gallery img[alt='seed 31340']").click()
    page.get_by_role("button", name="Use as seed B").click()
    page.wait_for_function("() => location.search.includes('b=31340') && location.search.includes('a=31339')")
    save_screenshot(page, tmp_path, "2-gallery-actions.png")

    page.get_by_role("tab", name="Interpolate").click()
    assert page.get_by_label("seed A", exact=True).input_value() == "31339"
    assert page.get_by_label("seed B", exact=True).input_value() == "31340"
    set_number(page, "frames", 9)
    page.get_by_role("button", name="Interpolate", exact=True).click()
    gif = image_bytes(page, "#gif img[src*='interp-31339-31340-9f-']")
    strip = image_bytes(page, "#strip img[src*='interp-31339-31340-9f-']")
    assert gif_frame_count(gif) == 9
    assert np.array_equal(tile(pixels(strip), 0, per_row=9), sample_pixels(model, 31339))
    page.wait_for_function("() => location.search.includes('frames=9')")
    link = page.url
    for part in ("seed=31337", "n=4", "a=31339", "b=31340", "frames=9", "tab=interpolate"):
        assert part in link, link
    save_screenshot(page, tmp_path, "2-walk.png")

    shared = context.new_page()  # someone opens the link
    shared.goto(link)
    shared_strip = image_bytes(shared, "#strip img[src*='interp-31339-31340-9f-']")
    assert shared_strip == strip and image_bytes(shared, "#gif img[src*='interp-31339-31340-9f-']") == gif
    assert shared.get_by_role("tab", name="Interpolate").get_attribute("aria-selected") == "true"
    shared.get_by_role("tab", name="Generate").click()
    shared.locator("#gallery img[alt='seed 31337']").wait_for()
    assert {seed: tile_bytes(shared, seed) for seed in tiles} == tiles
    save_screenshot(shared, tmp_path, "2-link-opened.png")


def test_a_bad_link_falls_back_to_defaults_with_a_note(context: "sync_api.BrowserContext", app: AppProcess) -> None:
    page = context.new_page()
    page.goto(app.url + "?seed=banana&n=4&frames=999&za=z1.broken")
    page.get_by_text("ignored ?seed=").first.wait_for()
    page.locator("#gallery img[alt='seed 45']").wait_for()  # n=4 from the link, seed 42 by default
    assert page.locator("#gallery img").count() == 4


# -- 3. watch it learn ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_app(local_hub_server: HubServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppProcess]:
    local_hub_server.reset()
    train_and_push(TRAINED_REPO, tmp_path_factory.mktemp("browser-run") / "run")
    process = start_app("--model", TRAINED_REPO, workdir=tmp_path_factory.mktemp("trained-app"))
    yield process.wait_until_ready()
    process.stop()


def test_the_training_tab_shows_each_epoch(context: "sync_api.BrowserContext", trained_app: AppProcess,
                                           tmp_path: Path) -> None:
    page = context.new_page()
    page.goto(trained_app.url + "?tab=training&tseeds=0-15")
    newest = image_bytes(page, "#training-grid img[src*='epoch-3']")
    expected = {epoch: pixels(grid_image(Generator.from_pretrained(TRAINED_REPO, revision=f"epoch-{epoch}")
                                         .sample(range(16)))) for epoch in (1, 3)}
    assert np.array_equal(pixels(newest), expected[3])
    gif = image_bytes(page, "#training-gif img")
    assert gif.startswith(b"GIF8") and gif_frame_count(gif) == 3
    page.get_by_text("epoch-1, epoch-2, epoch-3").wait_for()
    save_screenshot(page, tmp_path, "3-training-epoch-3.png")

    set_number(page, "epoch", 1)
    first = image_bytes(page, "#training-grid img[src*='epoch-1']")
    assert np.array_equal(pixels(first), expected[1]) and not np.array_equal(expected[1], expected[3])
    page.wait_for_function("() => location.search.includes('epoch=1')")
    save_screenshot(page, tmp_path, "3-training-epoch-1.png")


# -- 4. your face -------------------------------------------------------------------------------


def test_your_face_in_latent_space(context: "sync_api.BrowserContext", app: AppProcess, model: Path,
                                   tmp_path: Path) -> None:
    page = open_page(context, app.url)
    page.get_by_role("tab", name="Your face").click()
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("not a photo")
    page.locator("#photo input[type=file]").set_input_files(str(not_an_image))
    page.get_by_text("only images can be uploaded", exact=False).first.wait_for()  # the upload was refused
    save_screenshot(page, tmp_path, "4-refused.png")

    photo = tmp_path / "me.png"
    photo.write_bytes(encoded(face_like(320, 400, seed=5), "PNG"))
    page.locator("#photo input[type=file]").set_input_files(str(photo))
    reconstruction = image_bytes(page, "#reconstruction img")
    token = page.locator("#token textarea, #token input").first
    page.wait_for_function("() => { const t = document.querySelector('#token textarea, #token input');"
                           " return t && t.value.startsWith('z1.'); }")
    z = latent_token.decode(token.input_value(), 100)
    generator = Generator.from_pretrained(model)
    assert np.array_equal(pixels(reconstruction), render(generator, z[None])[0].permute(1, 2, 0).numpy())
    # the photo and its crop are shown inline (data: URLs), never as files; the upload field is cleared
    assert page.locator("#photo-crop .photo-preview img").get_attribute("src").startswith("data:image/jpeg;base64,")
    crop = page.locator("#photo-crop .photo-crop img").get_attribute("src")
    assert crop.startswith("data:image/png;base64,")
    assert np.array_equal(pixels(base64.b64decode(crop.split(",", 1)[1])),
                          load_photo(photo.read_bytes()).pixels.permute(1, 2, 0).numpy())
    assert page.locator("#photo img").count() == 0
    page.get_by_text("PSNR").wait_for()
    save_screenshot(page, tmp_path, "4-face.png")

    set_number(page, "to-seed", 42)
    page.get_by_role("button", name="Walk from my face").click()
    strip = image_bytes(page, "#strip img[src*='-42-24f-']")
    walk = pixels(strip)
    assert np.array_equal(tile(walk, 0, per_row=12), pixels(reconstruction))  # from my face…
    assert np.array_equal(tile(walk, 23, per_row=12), sample_pixels(model, 42))  # …to seed 42
    page.wait_for_function("() => location.search.includes('za=z1.')")
    save_screenshot(page, tmp_path, "4-walk-from-face.png")


# -- 5. steer the faces ------------------------------------------------------------------------------


def test_edit_a_gallery_face_with_a_slider_and_share_the_link(context: "sync_api.BrowserContext", app: AppProcess,
                                                              model: Path, tmp_path: Path) -> None:
    page = open_page(context, app.url)
    page.locator("#gallery img[alt='seed 44']").click()
    page.get_by_role("button", name="Edit this face").click()
    plain = image_bytes(page, "#edit-face img[src*='edit-seed44-t1-plain']")
    generator = Generator.from_pretrained(model)
    assert np.array_equal(pixels(plain), sample_pixels(model, 44))  # amount 0: the gallery's face
    assert page.get_by_role("tab", name="Edit").get_attribute("aria-selected") == "true"
    set_number(page, "direction-1", 2.5)
    edited = image_bytes(page, "#edit-face img[src*='d1x2.5']")
    expected = generator.sample([44], edit={1: 2.5})[0].permute(1, 2, 0).numpy()
    assert np.array_equal(pixels(edited), expected)
    page.wait_for_function("() => location.search.includes('edit=1%3D2.5') && location.search.includes('es=44')")
    page.get_by_role("button", name="Sweep −3 … +3").click()
    strip = pixels(image_bytes(page, "#sweep-strip img[src*='sweep0-9f']"))
    assert np.array_equal(tile(strip, 8, per_row=9),
                          generator.sample([44], edit={0: 3, 1: 2.5})[0].permute(1, 2, 0).numpy())
    save_screenshot(page, tmp_path, "5-edit.png")

    shared = context.new_page()  # the link redraws the edit, sliders set
    shared.goto(page.url)
    assert image_bytes(shared, "#edit-face img[src*='d1x2.5']") == edited
    assert shared.locator("#direction-1 input[type=number]").input_value() == "2.5"


def test_complete_with_a_brushed_mask_and_fill_arithmetic_groups_by_clicks(
    context: "sync_api.BrowserContext", app: AppProcess, model: Path, tmp_path: Path
) -> None:
    page = context.new_page()
    page.goto(app.url + "?tab=complete&cs=9&mask=eyes")
    page.locator("#completion-summary").get_by_text("560 of 4096 pixels").wait_for()  # a link completes at once
    page.get_by_text("clear", exact=True).click()
    canvas = page.locator("#brush canvas").bounding_box()
    page.mouse.move(canvas["x"] + 40, canvas["y"] + 40)
    page.mouse.down()
    page.mouse.move(canvas["x"] + 200, canvas["y"] + 60, steps=8)
    page.mouse.up()
    page.wait_for_function("() => document.querySelector('#mask-spec input, #mask-spec textarea').value"
                           ".startsWith('m1.')")
    page.wait_for_function("() => document.querySelector('#mask-preset input[value=brushed]').checked")
    page.get_by_role("button", name="Complete", exact=True).click()
    page.locator("#completion-summary").get_by_text("Adam steps").wait_for()
    page.wait_for_function("() => location.search.includes('mask=m1.') && location.search.includes('cs=9')")
    summary = page.locator("#completion-summary").inner_text()
    assert "560 of 4096" not in summary  # the brushed mask, not the link's preset
    original = page.locator("#completion img[alt=original]").get_attribute("src")
    assert np.array_equal(pixels(base64.b64decode(original.split(",", 1)[1])), sample_pixels(model, 9))
    save_screenshot(page, tmp_path, "5-complete.png")

    page.get_by_role("tab", name="Arithmetic").click()
    page.get_by_label("B", exact=True).check()
    page.locator("#arithmetic-gallery img[alt='seed 5']").click()
    page.wait_for_function("() => document.querySelector('#group-b textarea, #group-b input').value.endsWith(', 5')")
    page.get_by_role("button", name="A − B + C").click()
    page.locator("#arithmetic-figure img[src*='dcgan-arith-']").wait_for(state="attached")
    page.wait_for_function("() => location.search.includes('gb=')")
    save_screenshot(page, tmp_path, "5-arithmetic.png")
