"""The demo as a hostile visitor of a public Space would try it (issue 19): one ``app.py`` of
a given checkout on 127.0.0.1, its memory read from /proc (peak reset before each case by
writing 5 to /proc/PID/clear_refs: root only), each case's outcome as the visitor sees it.

Used by ``bench/hostile_memory.py --groups app`` (``--root`` runs another checkout, for the
"before" column). The app trusts one proxy (``DCGAN_TRUSTED_PROXIES=1``, as on a Space; a
checkout without it ignores the variable), so the "8 visitors" case speaks as 8 addresses
through X-Forwarded-For; every other request is one visitor, 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator

import httpx
from PIL import Image

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests"))  # the synthetic faces and model the tests use

from hostile_images import encoded, face_like  # noqa: E402

Row = dict[str, object]


class App:
    """``python ROOT/app.py --model MODEL`` on a free port, its own Gradio cache and temp folder."""

    def __init__(self, root: Path, model: Path, workdir: Path) -> None:
        self.cache, tmp = workdir / "cache", workdir / "tmp"
        self.cache.mkdir(parents=True), tmp.mkdir()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        env = {**os.environ, "PYTHONPATH": str(root), "GRADIO_TEMP_DIR": str(self.cache), "TMPDIR": str(tmp),
               "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "DCGAN_TRUSTED_PROXIES": "1"}
        self.log = (workdir / "app.log").open("wb")
        self.process = subprocess.Popen([sys.executable, str(root / "app.py"), "--model", str(model), "--port",
                                         str(self.port)], cwd=workdir, env=env, stdout=self.log,
                                        stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "gradio_api/info", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.3)
        raise RuntimeError(f"app.py did not start: {(workdir / 'app.log').read_text()[-2000:]}")

    def memory(self) -> tuple[float, float]:
        """(resident MB now, peak MB since the last reset)."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        field = lambda name: int(re.search(rf"{name}:\s+(\d+)", status).group(1)) / 1024  # noqa: E731
        return field("VmRSS"), field("VmHWM")

    def reset_peak(self) -> float:
        Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")
        return self.memory()[0]

    def call(self, name: str, data: list) -> tuple[str, object]:
        joined = httpx.post(f"{self.url}gradio_api/call/{name}", json={"data": data}, timeout=60)
        if joined.status_code != 200:
            return f"HTTP {joined.status_code}", joined.text[:120]
        kind = ""
        with httpx.stream("GET", f"{self.url}gradio_api/call/{name}/{joined.json()['event_id']}",
                          timeout=300) as stream:
            for line in stream.iter_lines():
                if line.startswith("event:"):
                    kind = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and kind in ("complete", "error"):
                    return kind, json.loads(line.split(":", 1)[1])
        return kind, None

    def upload(self, data: bytes, name: str = "me.png", visitor: str | None = None) -> httpx.Response:
        headers = {"X-Forwarded-For": visitor} if visitor else {}
        return httpx.post(self.url + "gradio_api/upload", files={"files": (name, data)}, headers=headers, timeout=120)

    def project(self, data: bytes, name: str = "me.png", visitor: str | None = None) -> str:
        uploaded = self.upload(data, name, visitor)
        if uploaded.status_code != 200:
            return f"upload HTTP {uploaded.status_code}: {uploaded.text[:80]}"
        kind, payload = self.call("project", [{"path": uploaded.json()[0], "meta": {"_type": "gradio.FileData"}}])
        return "ok" if kind == "complete" else f"{kind}: {_message(payload)}"

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def _message(payload: object) -> str:
    text = payload.get("error") if isinstance(payload, dict) else payload
    return " ".join(str(text).split())[:110]


def measured(app: App, label: str, work: Callable[[], str]) -> Row:
    """Run ``work`` against the app: its peak memory above the resident size before, time, outcome."""
    before = app.reset_peak()
    started = time.perf_counter()
    outcome = work()
    seconds = time.perf_counter() - started
    now, peak = app.memory()
    return {"case": label, "peak_mb": peak - before, "after_mb": now - before, "seconds": seconds,
            "outcome": outcome}


# -- the cases ------------------------------------------------------------------------------------


def photo_cases(app: App) -> Iterator[Row]:
    face = encoded(face_like(300, 400), "JPEG")
    big = encoded(Image.new("RGBA", (6300, 6300), (200, 150, 120, 255)), "PNG")
    yield measured(app, "300×400 JPEG /project (baseline)", lambda: app.project(face, "face.jpg"))
    yield measured(app, f"{len(big) // 1024} KB 6300×6300 RGBA PNG /project", lambda: app.project(big))
    with ThreadPoolExecutor(4) as pool:
        yield measured(app, "the same, 4 at once",
                       lambda: ", ".join(sorted(set(pool.map(lambda _: app.project(big), range(4))))))


def body_cases(app: App) -> Iterator[Row]:
    def post(route: str, size: int) -> str:
        try:
            answer = httpx.post(app.url + route, content=b"x" * size, headers={"Content-Type": "application/json"},
                                timeout=120)
            return f"HTTP {answer.status_code} {answer.text[:70]}"
        except httpx.HTTPError as error:
            return f"{type(error).__name__}"

    yield measured(app, "200 MB body to /gradio_api/reset", lambda: post("gradio_api/reset", 200 * 2**20))
    yield measured(app, "200 MB body to /gradio_api/cancel", lambda: post("gradio_api/cancel", 200 * 2**20))


def stalled_case(app: App) -> Iterator[Row]:
    photo = encoded(face_like(300, 400), "JPEG")

    def stall() -> str:
        connections = []
        for _ in range(8):  # headers and 1 kB of a 5 MB body, then nothing
            connection = socket.create_connection(("127.0.0.1", app.port))
            connection.sendall(b"POST /gradio_api/upload HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
                               b"boundary=B\r\nContent-Length: 5000000\r\n\r\n--B\r\n" + b"x" * 1024)
            connections.append(connection)
        time.sleep(0.5)
        during = app.upload(photo, "a.jpg").status_code
        time.sleep(12)
        later = app.upload(photo, "a.jpg").status_code
        for connection in connections:
            connection.close()
        return f"a real upload: HTTP {during} at 0.5 s, HTTP {later} at 12.5 s"

    yield measured(app, "8 stalled uploads (1 kB of 5 MB sent)", stall)


def volume_case(app: App) -> Iterator[Row]:
    photo = encoded(face_like(300, 400), "JPEG")

    def flood() -> str:
        codes: dict[int, int] = {}
        for index in range(60):  # distinct 10 MB uploads, never used
            data = photo + bytes([index % 256]) * (10 * 2**20 - len(photo) - 1024)
            status = app.upload(data, f"f{index}.jpg").status_code
            codes[status] = codes.get(status, 0) + 1
        left = sum(path.stat().st_size for path in app.cache.rglob("*") if path.is_file()) / 2**20
        return f"{codes}, {left:.0f} MB left in the cache"

    yield measured(app, "60 distinct 10 MB uploads, never used", flood)


def ownership_cases(app: App) -> Iterator[Row]:
    page = httpx.get(app.url, timeout=60).text
    tile = re.search(r'/gradio_api/file=([^"\\]+dcgan-seed42-t1\.png)', page).group(1)

    def post_tile() -> str:
        kind, payload = app.call("project", [{"path": tile, "meta": {"_type": "gradio.FileData"}}])
        return f"/project: {kind}; the tile then: HTTP {httpx.get(f'{app.url}gradio_api/file={tile}').status_code}"

    yield measured(app, "the first paint's tile posted to /project", post_tile)
    photo = encoded(face_like(300, 400, seed=5), "JPEG")

    def same_photo() -> str:
        with ThreadPoolExecutor(8) as pool:
            outcomes = list(pool.map(lambda index: app.project(photo, "same.jpg", f"10.0.0.{index}"), range(8)))
        return f"{outcomes.count('ok')} of 8 ok" + "".join(f"; {text[:60]}" for text in set(outcomes) - {"ok"})

    yield measured(app, "8 visitors project the same photo at once", same_photo)


def message_cases(app: App) -> Iterator[Row]:
    for label, name, data in [("/generate with 2 values", "generate", [1, 2]),
                              ("/interpolate with 7 values", "interpolate", [1, 2, "", 4, "slerp", False, 1.0])]:
        yield measured(app, label, lambda: "{}: {}".format(*app.call(name, data)))

    def keyword() -> str:
        answer = httpx.post(f"{app.url}gradio_api/call/v2/generate", json={"seed": 1, "colour": "red"}, timeout=30)
        return f"HTTP {answer.status_code} {answer.text[:90]}"

    yield measured(app, "/call/v2/generate with colour=red", keyword)


CASES = (photo_cases, ownership_cases, message_cases, body_cases, stalled_case, volume_case)


def app_rows(root: Path, model: Path) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="dcgan-hostile-app-") as name:
        app = App(root, model, Path(name))
        try:
            app.project(encoded(face_like(300, 400), "JPEG"), "warm.jpg")  # the first projection loads everything
            return [row for cases in CASES for row in cases(app)]
        finally:
            app.stop()
