"""Live mode in a real browser (Debian's chromium, Playwright) against app.py on 127.0.0.1.

1. The browser's pixels are the server's: 16 seeds, 3 edits (seed, truncated seed, latent token) and a
   walk frame, drawn by ONNX Runtime Web in the page, against the app's API.
2. A slider drag in the Edit tab is drawn in the page every animation frame with no request to the
   server; its release goes to the server (canonical PNG, URL state) as with live mode off.
3. The Interpolate tab plays the walk every animation frame (the frame rate is read from the page)
   and scrubs it without the server.
4. Without the runtime (its URL blocked) or without WebAssembly, the switch is disabled with a short
   reason and the server draws as before; a tampered latent token or a model the browser cannot run
   turns live mode off with a message, and no canvas is shown.

The runtime is served by the app from web/node_modules (`npm ci --prefix web`, in the README's test
command); nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import time
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

import numpy as np
import pytest

from dcgan_hf.serving.live import NPM_DIST, ORT_VERSION, RUNTIME_FILES, runtime_problem, sri
from test_app import AppProcess, client_for, make_model_folder, pixels, start_app, tile
from test_browser import CHROMIUM, WAIT_MS, browser, save_screenshot  # noqa: F401  (browser: the same fixture)

if not CHROMIUM.exists():
    pytest.skip("Debian chromium is not installed (apt-get install -y chromium chromium-driver)", allow_module_level=True)
from playwright import sync_api  # noqa: E402  (requirements-test.txt installs it)
if runtime_problem(NPM_DIST) is not None:
    pytest.skip("ONNX Runtime Web is not installed in web/node_modules: run `npm ci --prefix web` "
                "(the README's test command does)", allow_module_level=True)

LEVELS, SHARE = 2, 0.999  # the parity target: ≥ 99.9 % of pixels within 2/255 of the server's


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_folder(tmp_path_factory.mktemp("live-model") / "dcgan-live", ngf=32)


@pytest.fixture(scope="module")
def app(model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppProcess]:
    process = start_app("--model", str(model), workdir=tmp_path_factory.mktemp("live-app"), live=True)
    yield process.wait_until_ready()
    process.stop()


@pytest.fixture
def context(browser: "sync_api.Browser") -> Iterator["sync_api.BrowserContext"]:
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    context.set_default_timeout(WAIT_MS)
    yield context
    context.close()


def open_tab(context: "sync_api.BrowserContext", app: AppProcess, tab: str, query: str = "") -> "sync_api.Page":
    page = context.new_page()
    page.goto(f"{app.url}?tab={tab}{query}")
    page.locator(f"#live-{'edit' if tab == 'edit' else 'walk'} .live-status").wait_for(state="attached")
    # the link's own events are done (their last one sets the flag): a link's edit resets the sliders,
    # and under load it could otherwise land after the test's first move
    page.wait_for_function("() => window.dcganLoaded === true")
    return page


def switch_on(page: "sync_api.Page", kind: str) -> None:
    page.wait_for_function(f"() => !document.querySelector('#live-{kind} .live-switch').disabled")
    page.locator(f"#live-{kind} .live-switch").check()
    page.wait_for_function(f"() => window.dcganLive.stats('{kind}').frames > 0")


def status(page: "sync_api.Page", kind: str) -> str:
    return page.locator(f"#live-{kind} .live-status").inner_text()


def rgb(encoded: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(encoded), np.uint8).reshape(64, 64, 3)


def parity(pairs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[int, float]:
    """The largest difference and the share of pixel values within LEVELS, over all pairs."""
    differences = np.concatenate([np.abs(a.astype(int) - b.astype(int)).ravel() for a, b in pairs])
    return int(differences.max()), float((differences <= LEVELS).mean())


class RequestLog:
    """Every request the page makes (to any host), with the time it was made."""

    def __init__(self, page: "sync_api.Page") -> None:
        self.requests: list[tuple[float, str, str]] = []
        page.on("request", lambda request: self.requests.append((time.monotonic(), request.method, request.url)))

    def since(self, started: float) -> list[tuple[str, str]]:
        return [(method, url) for at, method, url in self.requests if at >= started]


def drag(page: "sync_api.Page", selector: str, pixels_to_move: int, steps: int = 40) -> tuple[float, float]:
    """Press on a range's middle, move right by ``pixels_to_move`` in ``steps`` moves, and hold: (start, end) times."""
    box = page.locator(selector).bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    started = time.monotonic()
    page.mouse.down()
    for step in range(1, steps + 1):
        page.mouse.move(x + pixels_to_move * step / steps, y)
        page.wait_for_timeout(15)
    return started, time.monotonic()


# -- 1. the browser's pixels are the server's ------------------------------------------------------------


def test_the_browser_draws_the_servers_pixels(context, app, tmp_path):
    page = open_tab(context, app, "edit")
    info = page.evaluate("() => window.dcganLive.ready()")
    assert info["check"]["within"] == 1.0 and info["threads"] >= 1  # the manifest's check face, in the page
    seeds = page.evaluate("async () => { const out = []; for (let seed = 0; seed < 16; seed++) "
                          "out.push(await window.dcganLive.editPixels({seed})); return out; }")
    client = client_for(app, tmp_path / "api")
    grid = pixels(client.predict(seed=0, n=16, truncation=1.0, api_name="/generate"))
    pairs = [(rgb(seeds[seed]), tile(grid, seed, per_row=4)) for seed in range(16)]

    _, token = client.predict(seed=5, truncation=1.0, latent="", edit="2=1", api_name="/edit")
    edits = [(3, 1.0, "", {0: 2.5}), (11, 0.7, "", {1: -1.5, 2: 3}), (0, 1.0, token, {0: -2, 3: 0.5})]
    for seed, truncation, latent, edit in edits:
        text = ",".join(f"{index}={amount}" for index, amount in edit.items())
        server, _ = client.predict(seed=seed, truncation=truncation, latent=latent, edit=text, api_name="/edit")
        live = page.evaluate("(options) => window.dcganLive.editPixels(options)",
                             {"seed": seed, "truncation": truncation, "latent": latent, "edit": edit})
        pairs.append((rgb(live), pixels(server)))

    walk = {"seed_a": 1, "seed_b": 2, "more_seeds": "3", "frames": 9, "method": "slerp", "closed": True,
            "truncation": 0.8, "start_latent": "", "end_latent": token}
    strip, _ = client.predict(**walk, api_name="/interpolate")
    for frame in (0, 4, 7):
        live = page.evaluate("([fields, frame]) => window.dcganLive.walkPixels(fields, frame)", [walk, frame])
        pairs.append((rgb(live), tile(pixels(strip), frame, per_row=9)))
    largest, share = parity(pairs)
    print(f"live vs server: {len(pairs)} faces, max difference {largest}/255, {100 * share:.3f}% within {LEVELS}/255")
    assert share >= SHARE, (largest, share)


# -- 2. a slider drag in the Edit tab ------------------------------------------------------------------------


def test_a_live_drag_never_calls_the_server_and_its_release_does(context, app, tmp_path):
    page = open_tab(context, app, "edit", "&es=44")
    page.locator("#edit-face img[src*='seed44-t1-plain']").wait_for(state="attached")
    log = RequestLog(page)
    switch_on(page, "edit")
    before = page.evaluate("() => window.dcganLive.stats('edit').frames")
    started, ended = drag(page, "#direction-1 input[type=range]", 90)
    page.wait_for_timeout(300)  # still holding the mouse: nothing may reach the server
    during = log.since(started)
    held = page.evaluate("() => window.dcganLive.stats('edit')")
    value = float(page.locator("#direction-1 input[type=range]").input_value())
    canvas = rgb(page.evaluate("() => window.dcganLive.canvas('edit')"))
    shown = page.locator("#direction-1 input[type=number]").input_value()
    save_screenshot(page, tmp_path, "live-1-drag.png")
    page.mouse.up()
    assert during == [], during
    assert value > 0.5 and held["frames"] - before >= 10, (value, held)  # drawn while the slider moved
    assert shown == f"{value:g}"  # its number box follows the drag

    amount = f"{value:g}"  # the release: the server draws the canonical face and writes the URL
    server = page.locator(f"#edit-face img[src*='seed44-t1-d1x{amount}.png']")
    server.wait_for(state="attached")
    page.wait_for_function(f"() => location.search.includes('edit=1%3D{amount}')")
    assert any("/gradio_api/queue/join" in url for _, url in log.since(ended))
    expected = page.evaluate("(edit) => window.dcganLive.editPixels({seed: 44, edit})", {1: value})
    assert np.array_equal(canvas, rgb(expected))  # the canvas showed the latent the server draws on release
    largest, share = parity([(canvas, pixels(page.request.get(server.get_attribute("src")).body()))])
    assert share >= SHARE, (largest, share)


# -- 3. the walk: play and scrub ---------------------------------------------------------------------------


def test_the_live_walk_plays_every_animation_frame_and_scrubs_without_the_server(context, app, tmp_path):
    page = open_tab(context, app, "interpolate")
    log = RequestLog(page)
    switch_on(page, "walk")
    start = page.evaluate("() => window.dcganLive.stats('walk')")
    started = time.monotonic()
    page.locator("#live-walk .live-play").click()
    page.wait_for_timeout(1500)
    playing = page.evaluate("() => window.dcganLive.stats('walk')")
    page.locator("#live-walk .live-play").click()  # pause
    ticks, frames = playing["ticks"] - start["ticks"], playing["frames"] - start["frames"]
    print(f"walk: {frames} frames drawn in {ticks} animation frames, {playing['fps']:.1f} frames/s in the page, "
          f"{playing['engine']['meanRunMs']:.1f} ms a face")
    assert frames >= 0.8 * ticks and playing["fps"] > 0, playing  # a new face every animation frame
    save_screenshot(page, tmp_path, "live-2-walk.png")

    scrub = "#live-walk .live-scrub"
    page.locator(scrub).evaluate("(range) => range.scrollIntoView()")
    drag(page, scrub, -60, steps=20)
    page.mouse.up()
    page.wait_for_timeout(300)
    assert log.since(started) == []  # playing and scrubbing are the page's own business
    position = int(page.locator(scrub).input_value())
    frame = int(page.locator("#edit-frame-number input").input_value())
    assert 0 < position < 1000 and frame == round(position / 1000 * 23) + 1, (position, frame)  # "Edit this frame"


# -- 4. fallbacks and bad input -----------------------------------------------------------------------------


def test_without_the_runtime_or_webassembly_the_switch_is_off_and_the_server_draws(context, app):
    context.route("**/live/ort/**", lambda route: route.abort())
    page = open_tab(context, app, "edit", "&es=8")
    page.wait_for_function("() => document.querySelector('#live-edit .live-status').textContent"
                           ".includes('cannot be reached')")
    assert page.locator("#live-edit .live-switch").is_disabled()
    assert "ONNX Runtime Web cannot be reached" in status(page, "edit")
    assert page.locator("#live-edit .live-stage").is_hidden()
    page.locator("#edit-face img[src*='seed8-t1-plain']").wait_for(state="attached")
    box = page.locator("#direction-0 input[type=number]")  # the server draws as it always did
    box.fill("1.5")
    box.press("Enter")
    page.locator("#edit-face img[src*='seed8-t1-d0x1.5']").wait_for(state="attached")

    page = context.new_page()
    page.add_init_script("delete window.WebAssembly")
    page.goto(f"{app.url}?tab=interpolate")
    page.wait_for_function("() => (document.querySelector('#live-walk .live-status') || {}).textContent"
                           "?.includes('no WebAssembly')")
    assert page.locator("#live-walk .live-switch").is_disabled()


def test_a_tampered_token_or_a_model_the_browser_cannot_run_turns_live_off(context, app):
    page = open_tab(context, app, "edit")
    switch_on(page, "edit")
    latent = page.locator("#edit-latent input, #edit-latent textarea").first
    latent.fill("z1.AAAAtampered")
    latent.press("Enter")
    page.wait_for_function("() => !window.dcganLive.stats('edit').live")
    assert "live mode turned off" in status(page, "edit") and "latent" in status(page, "edit")
    assert page.locator("#live-edit .live-stage").is_hidden()  # no canvas left showing an old face
    assert not page.locator("#live-edit .live-switch").is_disabled()  # fix the token, switch it on again

    garbage = b"this is not an ONNX graph" * 40
    for change, message in (("model", "this browser cannot run the model"),
                            ("check", "this browser draws the model differently")):
        def manifest(route: "sync_api.Route") -> None:
            payload = route.fetch().json()
            if change == "model":
                payload["model"].update(url="live/model-broken.onnx", integrity=sri(garbage, "sha256"))
            else:
                wrong = 255 - np.frombuffer(base64.b64decode(payload["check"]["pixels"]), np.uint8)
                payload["check"]["pixels"] = base64.b64encode(wrong.tobytes()).decode()
            route.fulfill(status=200, content_type="application/json", body=json.dumps(payload))

        broken = context.new_page()
        broken.route("**/live/manifest.json", manifest)
        broken.route("**/live/model-broken.onnx", lambda route: route.fulfill(status=200, body=garbage))
        broken.goto(f"{app.url}?tab=edit")
        broken.locator("#live-edit .live-switch").wait_for(state="attached")
        broken.wait_for_function("() => !document.querySelector('#live-edit .live-switch').disabled")
        broken.locator("#live-edit .live-switch").check()
        broken.wait_for_function("() => document.querySelector('#live-edit .live-status').textContent"
                                 ".startsWith('live mode is off')")
        assert message in status(broken, "edit") and broken.locator("#live-edit .live-switch").is_disabled()
        assert broken.locator("#live-edit .live-stage").is_hidden()


def test_the_live_routes_through_the_whole_app_are_get_only_and_fixed(app):
    parts = urlsplit(app.url)

    def request(method: str, path: str, body: bytes | None = None, **headers: str) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        connection.request(method, path, body, headers)  # the path as written: no client-side normalisation
        response = connection.getresponse()
        return response.status, response.read()

    assert request("POST", "/live/manifest.json")[0] == 405
    # the route guard stands in front of /live/ as of every route: a body is bounded before it is read
    status, body = request("GET", "/live/latent?seed=1", b"x", **{"Content-Length": str(300 * 1024)})
    assert status == 413 and b"at most 256 kB" in body, body  # refused on its declared length, unread
    status, body = request("GET", "/live/manifest.json", iter([b"x" * 16384] * 20))  # chunked: counted as it comes
    assert status == 413 and b"at most 256 kB" in body, body
    status, body = request("GET", "/live/latent?seed=1&x=" + "a" * 5000)
    assert status == 414 and b"at most 4096 bytes of query" in body, body
    assert request("GET", f"/live/ort/{ORT_VERSION}/../../../../etc/passwd")[0] == 404
    assert request("GET", "/live/model-0123456789abcdef.onnx")[0] == 404
    status, wasm = request("GET", f"/live/ort/{ORT_VERSION}/ort-wasm-simd-threaded.wasm")
    assert status == 200 and sri(wasm) == RUNTIME_FILES["ort-wasm-simd-threaded.wasm"]
    status, body = request("GET", "/live/manifest.json")
    manifest = json.loads(body)
    status, model = request("GET", "/" + manifest["model"]["url"])
    assert status == 200 and hashlib.sha256(model).hexdigest() == manifest["model"]["sha256"]
