"""Live mode in headless Chromium: frames per second and pixel parity with the server (issue 18).

Starts app.py (the bundled model: 64×64, width 32, on the CPU), opens the page in Debian's
chromium (Playwright, headless) and measures, in the same run:

- **frame rate**: the Interpolate tab's walk played for a few seconds, and a slider drag in the
  Edit tab (the slider's input event fired once per animation frame, as a drag does), read from
  the page's own counters (``window.dcganLive.stats``), with the requests the page made meanwhile;
- **the baseline**: the same drag with live mode off, where every move goes to the server (Gradio's
  queue, the inference worker, a PNG): how many new faces per second reach the page that way;
- **the engine**: milliseconds per face inside ONNX Runtime Web (session.run + the uint8 conversion);
- **parity**: seeds, edits (seeds, truncated seeds, a latent token) and walk frames drawn in the page
  against the app's API pixels (CPU, fp32): largest difference, share within 2/255, share identical.

Needs the runtime in web/node_modules (``npm ci --prefix web``) and /usr/bin/chromium. Not a test: it prints.

    .venv/bin/python bench/live_mode.py [--model FOLDER] [--seeds 64] [--seconds 4]
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
from gradio_client import Client  # noqa: E402
from PIL import Image  # noqa: E402
from playwright.sync_api import Page, sync_playwright  # noqa: E402

from dcgan_hf.hub import BUNDLED_MODEL  # noqa: E402
from dcgan_hf.serving.live import NPM_DIST, ORT_VERSION, runtime_problem  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
LEVELS = 2

# a slider drag, driven from inside the page: one input event per animation frame (what a mouse drag fires)
DRAG = """async ([selector, seconds]) => {
  const range = document.querySelector(selector);
  const low = Number(range.min), high = Number(range.max), step = Number(range.step);
  const started = performance.now();
  let moves = 0;
  await new Promise((resolve) => {
    const move = (now) => {
      const phase = ((now - started) / 2000) % 1;  // sweep −6 … +6 and back every 2 s
      const value = low + (high - low) * (phase < 0.5 ? 2 * phase : 2 - 2 * phase);
      range.value = String(Math.round(value / step) * step);
      range.dispatchEvent(new Event("input", { bubbles: true }));
      moves += 1;
      if (now - started < seconds * 1000) requestAnimationFrame(move); else resolve();
    };
    requestAnimationFrame(move);
  });
  return moves;
}"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_app(model: str, workdir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    log = (workdir / "app.log").open("wb")
    process = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--model", model, "--device", "cpu",
                                "--port", str(port)], cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"app.py exited: see {workdir / 'app.log'}")
        try:
            urllib.request.urlopen(url + "gradio_api/info", timeout=2).close()
            return process, url
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise SystemExit("app.py did not start within 180 s")


def pixels(source: Any) -> np.ndarray:
    image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    return np.asarray(image.convert("RGB"))


def tile(grid: np.ndarray, index: int, per_row: int) -> np.ndarray:
    row, column = divmod(index, per_row)
    return grid[2 + row * 66: 2 + row * 66 + 64, 2 + column * 66: 2 + column * 66 + 64]


def rgb(encoded: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(encoded), np.uint8).reshape(64, 64, 3)


def stats(page: Page, kind: str) -> dict[str, Any]:
    return page.evaluate(f"() => window.dcganLive.stats('{kind}')")


def switch_on(page: Page, kind: str) -> None:
    page.locator(f"#live-{kind} .live-switch").wait_for(state="attached")
    page.wait_for_function(f"() => !document.querySelector('#live-{kind} .live-switch').disabled", timeout=120_000)
    page.locator(f"#live-{kind} .live-switch").check()
    page.wait_for_function(f"() => window.dcganLive.stats('{kind}').frames > 0", timeout=120_000)


def count_requests(page: Page) -> list[float]:
    times: list[float] = []
    page.on("request", lambda request: times.append(time.monotonic()))
    return times


def measure_walk(page: Page, seconds: float) -> dict[str, float]:
    switch_on(page, "walk")
    requests = count_requests(page)
    before, started = stats(page, "walk"), time.monotonic()
    page.evaluate("() => window.dcganLive.setPlaying(true)")
    page.wait_for_timeout(seconds * 1000)
    after, ended = stats(page, "walk"), time.monotonic()
    page.evaluate("() => window.dcganLive.setPlaying(false)")
    frames, ticks = after["frames"] - before["frames"], after["ticks"] - before["ticks"]
    return {"fps": frames / (ended - started), "frames": frames, "ticks": ticks,
            "requests": sum(started <= at <= ended for at in requests), "ms": after["engine"]["meanRunMs"]}


def measure_drag(page: Page, seconds: float, live: bool) -> dict[str, float]:
    """Faces per second that reach the page while a slider is dragged: drawn here (live) or by the server."""
    if live:
        switch_on(page, "edit")
    requests = count_requests(page)
    page.evaluate("() => { window.benchFaces = new Set(); new MutationObserver(() => { const img = "
                  "document.querySelector('#edit-face img'); if (img) window.benchFaces.add(img.src); })"
                  ".observe(document.querySelector('#edit-face'), {subtree: true, attributes: true, childList: true}); }")
    before, started = stats(page, "edit"), time.monotonic()
    moves = page.evaluate(DRAG, ["#direction-0 input[type=range]", seconds])
    ended = time.monotonic()
    after = stats(page, "edit")
    if live:
        shown = after["frames"] - before["frames"]
    else:
        page.wait_for_timeout(500)
        shown = page.evaluate("() => window.benchFaces.size")
    return {"fps": shown / (ended - started), "moves": moves, "requests": sum(started <= at <= ended for at in requests)}


def measure_parity(page: Page, client: Client, seeds: int) -> dict[str, float]:
    page.evaluate("() => window.dcganLive.ready()")
    pairs = []
    for first in range(0, seeds, 16):
        grid = pixels(client.predict(seed=first, n=16, truncation=1.0, api_name="/generate"))
        live = page.evaluate("async (first) => { const out = []; for (let s = first; s < first + 16; s++) "
                             "out.push(await window.dcganLive.editPixels({seed: s})); return out; }", first)
        pairs += [(rgb(live[index]), tile(grid, index, 4)) for index in range(16)]
    _, token = client.predict(seed=5, truncation=1.0, latent="", edit="2=1", api_name="/edit")
    generator = np.random.default_rng(0)
    for index in range(12):
        seed, truncation, latent = (int(generator.integers(0, 10_000)), [1.0, 0.7, 0.5][index % 3],
                                    token if index % 4 == 3 else "")
        chosen = generator.choice(10, size=2, replace=False)
        edit = {int(direction): round(float(generator.uniform(-4, 4)), 1) for direction in chosen}
        text = ",".join(f"{direction}={amount:g}" for direction, amount in edit.items())
        server, _ = client.predict(seed=seed, truncation=truncation, latent=latent, edit=text, api_name="/edit")
        live = page.evaluate("(options) => window.dcganLive.editPixels(options)",
                             {"seed": seed, "truncation": truncation, "latent": latent, "edit": edit})
        pairs.append((rgb(live), pixels(server)))
    walk = {"seed_a": 10, "seed_b": 20, "more_seeds": "30, 40", "frames": 24, "method": "slerp", "closed": True,
            "truncation": 0.8, "start_latent": token, "end_latent": ""}
    strip = pixels(client.predict(**walk, api_name="/interpolate")[0])
    for frame in range(24):
        live = page.evaluate("([fields, frame]) => window.dcganLive.walkPixels(fields, frame)", [walk, frame])
        pairs.append((rgb(live), tile(strip, frame, 12)))
    differences = np.concatenate([np.abs(a.astype(int) - b.astype(int)).ravel() for a, b in pairs])
    return {"faces": len(pairs), "max": int(differences.max()), "within": float((differences <= LEVELS).mean()),
            "identical": float((differences == 0).mean()), "values": differences.size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(BUNDLED_MODEL))
    parser.add_argument("--seeds", type=int, default=64, help="seeds for the parity check (a multiple of 16)")
    parser.add_argument("--seconds", type=float, default=4.0, help="how long each frame-rate run lasts")
    args = parser.parse_args()
    problem = runtime_problem(NPM_DIST)
    if problem:
        raise SystemExit(f"live mode needs the runtime in web/node_modules ({problem}): npm ci --prefix web")
    with tempfile.TemporaryDirectory(prefix="dcgan-live-bench-") as workdir:
        process, url = launch_app(args.model, Path(workdir))
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
                version = browser.version
                page = browser.new_page(viewport={"width": 1280, "height": 1000})
                page.goto(url + "?tab=interpolate")
                walk = measure_walk(page, args.seconds)
                page.goto(url + "?tab=edit")
                page.locator("#edit-face img").wait_for(state="attached")
                baseline = measure_drag(page, args.seconds, live=False)
                page.goto(url + "?tab=edit")
                page.locator("#edit-face img").wait_for(state="attached")
                drag = measure_drag(page, args.seconds, live=True)
                info = page.evaluate("() => window.dcganLive.ready()")
                parity = measure_parity(page, Client(url, verbose=False, download_files=workdir), args.seeds)
                browser.close()
        finally:
            process.terminate()
            process.wait(timeout=30)
    report(args, version, walk, baseline, drag, info, parity)


def report(args: argparse.Namespace, version: str, walk: dict, baseline: dict, drag: dict, info: dict,
           parity: dict) -> None:
    print(f"live mode: {args.model}, headless Chromium {version}, ONNX Runtime Web {ORT_VERSION} (WASM, SIMD, "
          f"{info['threads']} thread{'s' if info['threads'] > 1 else ''}; cross-origin isolated: "
          f"{info['crossOriginIsolated']}), {platform.machine()} {os.cpu_count()} CPUs")
    print(f"{'':38} {'faces/s':>8} {'requests':>9}")
    print(f"{'walk played (Interpolate, live)':38} {walk['fps']:8.1f} {walk['requests']:9d}   "
          f"{walk['frames']} faces in {walk['ticks']} animation frames")
    print(f"{'slider drag, live':38} {drag['fps']:8.1f} {drag['requests']:9d}   {drag['moves']} slider moves")
    print(f"{'slider drag, live off (the server)':38} {baseline['fps']:8.1f} {baseline['requests']:9d}   "
          f"{baseline['moves']} slider moves")
    print(f"live / server faces per second while dragging: {drag['fps'] / max(baseline['fps'], 1e-9):.1f}×")
    print(f"engine: {info['meanRunMs']:.2f} ms a face (session.run + uint8), over {info['runs']} runs; "
          f"at most {1000 / info['meanRunMs']:.0f} faces/s")
    print(f"parity, {parity['faces']} faces ({args.seeds} seeds, 12 edits, 24 walk frames) against the server "
          f"(CPU, fp32): max difference {parity['max']}/255, {100 * parity['within']:.4f}% within {LEVELS}/255, "
          f"{100 * parity['identical']:.4f}% identical ({parity['values']:,} values)")
    target = walk["fps"] >= 30 and drag["fps"] >= 30 and parity["within"] >= 0.999 and drag["requests"] == 0
    print(f"targets (≥ 30 faces/s, ≥ 99.9% within 2/255, no request during a drag): {'met' if target else 'NOT met'}")


if __name__ == "__main__":
    main()
