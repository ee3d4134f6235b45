"""The demo tried from outside: hostile uploads, routes that would skip the queue, the queue's
limits under a burst, and shutdown by SIGTERM.

The app runs as a subprocess with its own Gradio cache (``GRADIO_TEMP_DIR``) and temporary
folder (``TMPDIR``), so the tests can look at every file it leaves on disk.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from dcgan_hf import Generator
from dcgan_hf.photos import MAX_BYTES
from hostile_images import encoded, face_like, hostile_files
from test_app import AppProcess, client_for, expected_grid, make_model_folder, pixels, start_app, write_photo


@dataclass
class GuardedApp:
    app: AppProcess
    cache: Path  # its GRADIO_TEMP_DIR
    tmp: Path  # its TMPDIR (the output folder lives there)
    model: Path

    def files_on_disk(self) -> list[Path]:
        return [path for root in (self.cache, self.tmp) for path in root.rglob("*") if path.is_file()]


def start_guarded(workdir: Path, model: Path, as_background_job: bool = False) -> GuardedApp:
    cache, tmp = workdir / "gradio-cache", workdir / "tmp"
    cache.mkdir(parents=True), tmp.mkdir()
    app = start_app("--model", str(model), workdir=workdir,
                    env={"GRADIO_TEMP_DIR": str(cache), "TMPDIR": str(tmp)}, as_background_job=as_background_job)
    return GuardedApp(app.wait_until_ready(), cache, tmp, model)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # ngf=64 (twice the bundled model's width): a projection then keeps the worker busy for seconds
    return make_model_folder(tmp_path_factory.mktemp("hardening") / "model", ngf=64)


@pytest.fixture(scope="module")
def guarded(model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GuardedApp]:
    instance = start_guarded(tmp_path_factory.mktemp("guarded"), model)
    yield instance
    instance.app.stop()


def read_call(url: str, api_name: str, data: list, timeout: float = 120) -> tuple[str, object]:
    """POST /gradio_api/call/<name> (the queued REST route), then read its event stream to the end."""
    joined = httpx.post(f"{url}gradio_api/call/{api_name}", json={"data": data}, timeout=30)
    if joined.status_code != 200:
        return "refused", joined.json().get("detail") or joined.json().get("error")
    event_id = joined.json()["event_id"]
    kind, payload = "", None
    with httpx.stream("GET", f"{url}gradio_api/call/{api_name}/{event_id}", timeout=timeout) as stream:
        for line in stream.iter_lines():
            if line.startswith("event:"):
                kind = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and kind in ("complete", "error"):
                payload = json.loads(line.split(":", 1)[1])
                return kind, payload
    return kind, payload


# -- uploads ------------------------------------------------------------------------------------


def test_hostile_uploads_get_messages_and_nothing_of_them_stays(guarded: GuardedApp, tmp_path: Path) -> None:
    url = guarded.app.url
    files = hostile_files(tmp_path / "hostile")
    # the upload route itself: only images, at most 10 MB (refused before it is read)
    refused = httpx.post(url + "gradio_api/upload", files={"files": ("notes.jpg", files["text.jpg"].read_bytes())})
    assert refused.status_code == 415 and "only images can be uploaded here" in refused.text
    jpeg = encoded(face_like(), "JPEG")
    refused = httpx.post(url + "gradio_api/upload", files={"files": ("big.jpg", jpeg + bytes(2 * MAX_BYTES))})
    assert refused.status_code == 413 and "at most 10 MB" in refused.text  # by its declared length
    refused = httpx.post(url + "gradio_api/upload", files={"files": ("big.jpg", jpeg + bytes(MAX_BYTES))})
    assert refused.status_code == 413 and "maximum allowed size of 10485760 bytes" in refused.text  # max_file_size
    assert httpx.post(url + "gradio_api/process_recording", files={"video": ("a.mp4", b"x")}).status_code == 404

    client = client_for(guarded.app, tmp_path / "downloads")
    with pytest.raises(httpx.HTTPStatusError, match="415"):
        client.predict(photo=handle_file(files["text.jpg"]), api_name="/project")
    for name, message in [("truncated.jpg", "truncated or damaged"), ("bomb.png", "far too many pixels"),
                          ("sliver.png", "1×300000 pixels"), ("garbage.png", "not a readable PNG")]:
        with pytest.raises(AppError, match=message):
            client.predict(photo=handle_file(files[name]), api_name="/project")
    photo = write_photo(tmp_path, seed=3, kind="WEBP")
    face, token, _ = client.predict(photo=handle_file(photo), api_name="/project")
    assert token.startswith("z1.") and Path(face).is_file()
    # still serving, exactly
    grid = client.predict(seed=5, n=4, truncation=1.0, api_name="/generate")
    assert np.array_equal(pixels(grid), expected_grid(Generator.from_pretrained(guarded.model), [5, 6, 7, 8]))

    with urllib.request.urlopen(url + "config", timeout=10) as response:
        assert json.load(response)["run_history"] is False  # no copy of a call's inputs anywhere
    uploaded = {hashlib.sha256(path.read_bytes()).hexdigest() for path in [*files.values(), photo]}
    left = [path for path in guarded.files_on_disk() if hashlib.sha256(path.read_bytes()).hexdigest() in uploaded]
    assert left == [], f"uploaded bytes still on disk: {left}"


def test_a_path_outside_the_upload_folder_is_neither_read_nor_deleted(guarded: GuardedApp, tmp_path: Path) -> None:
    victim = tmp_path / "victim.jpg"
    victim.write_bytes(encoded(face_like(), "JPEG"))
    kind, payload = read_call(guarded.app.url, "project",
                              [{"path": str(victim), "meta": {"_type": "gradio.FileData"}}])
    assert kind == "error" and payload, payload
    assert victim.is_file()


def test_files_by_url_and_oversized_calls_are_refused(guarded: GuardedApp) -> None:
    url = guarded.app.url
    remote = {"path": "http://127.0.0.1:9/face.jpg", "meta": {"_type": "gradio.FileData"}}
    kind, message = read_call(url, "project", [remote])  # Gradio would download it, at any size
    assert kind == "refused" and "URLs are not fetched" in message
    joined = httpx.post(url + "gradio_api/queue/join", json={"data": [remote], "fn_index": 1, "session_hash": "x"})
    assert joined.status_code == 400 and "URLs are not fetched" in joined.text
    huge = httpx.post(url + "gradio_api/call/generate", json={"data": [1, 1, 1.0], "pad": "x" * 300_000})
    assert huge.status_code == 413 and "at most 256 kB" in huge.text
    assert read_call(url, "generate", [1, 1, 1.0])[0] == "complete"  # ordinary calls pass the guard


# -- routes that would skip the queue -------------------------------------------------------------


def test_direct_routes_are_closed_with_a_message(guarded: GuardedApp) -> None:
    url = guarded.app.url
    with urllib.request.urlopen(url + "config", timeout=10) as response:
        dependencies = json.load(response)["dependencies"]
    names = {dependency["api_name"] for dependency in dependencies if dependency.get("api_name")}
    assert {"generate", "interpolate", "project", "model_info"} <= names
    answers = Counter()
    for dependency in dependencies:
        answers[_direct(url, "run/predict", {"data": [], "fn_index": dependency["id"]})] += 1
    for name in names:
        for prefix in ("run", "api"):
            answers[_direct(url, f"{prefix}/{name}", {"data": [1, 1, 1.0]})] += 1
    assert set(answers) == {(404, True)}, answers  # every one refused, every refusal says why


def _direct(url: str, route: str, body: dict) -> tuple[int, bool]:
    response = httpx.post(f"{url}gradio_api/{route}", json=body, timeout=30)
    message = response.json().get("error") or response.json().get("detail")
    return response.status_code, isinstance(message, str) and "queue" in message


def test_bad_values_through_the_rest_route_get_messages(guarded: GuardedApp) -> None:
    for api_name, data, message in [
        ("generate", [1, 1, 2**1100], "far too large"),
        ("generate", [1, "many", 1.0], "number of images must be a whole number"),
        ("interpolate", [1, 2, "", 4, "slerp", False, 1.0, "z1.@@", ""], "start latent is damaged"),
        ("training_grid", [1, "0", 1.0], "no endpoint named 'training_grid'"),  # no Training tab here
    ]:
        kind, payload = read_call(guarded.app.url, api_name, data)
        if api_name == "training_grid":
            assert kind == "refused" and message in str(payload), payload
            continue
        text = payload.get("error") if isinstance(payload, dict) else payload
        assert kind == "error" and isinstance(text, str) and message in text, (api_name, payload)


# -- the queue's limits -----------------------------------------------------------------------------


def test_the_queue_runs_four_and_keeps_sixty_four_waiting_on_every_route(guarded: GuardedApp, tmp_path: Path) -> None:
    url = guarded.app.url
    clients = [Client(url, verbose=False, download_files=str(tmp_path / f"c{index}")) for index in range(10)]
    slow = [clients[index].submit(photo=handle_file(write_photo(tmp_path, seed=10 + index)), api_name="/project")
            for index in range(4)]  # four different photos: Gradio stores identical uploads as one file
    deadline = time.monotonic() + 60
    while sum(job.status().code.name == "PROCESSING" for job in slow) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)  # the four slots are taken (each projection holds one for seconds)
    burst = [clients[index % 10].submit(seed=index, n=1, truncation=1.0, api_name="/generate")
             for index in range(90)]
    with ThreadPoolExecutor(max_workers=10) as pool:  # the REST route joins the same queue
        rest = list(pool.map(lambda index: read_call(url, "generate", [500 + index, 1, 1.0]), range(10)))

    outcomes = Counter()
    model = Generator.from_pretrained(guarded.model)
    for index, job in enumerate(burst):
        try:
            grid = job.result(timeout=300)
        except Exception as error:  # noqa: BLE001 - counted and checked below
            outcomes[str(error)] += 1
        else:
            assert np.array_equal(pixels(grid), expected_grid(model, [index]))
            outcomes["ok"] += 1
    for kind, payload in rest:
        outcomes["ok" if kind == "complete" else f"rest {kind}: {str(payload)[:40]}"] += 1
    for job in slow:
        job.result(timeout=300)
    info = clients[0].predict(api_name="/model_info")
    assert info["peak_requests_running"] == 4  # never more than four inside the model at once
    full = {key: count for key, count in outcomes.items() if key != "ok"}
    assert full and all("full" in key.lower() for key in full), outcomes  # the rest were turned away…
    assert outcomes["ok"] <= 64 + 4 + 10, outcomes  # …after at most 64 waited (+ those finished meanwhile)


# -- shutdown -----------------------------------------------------------------------------------


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_cleans_the_output_folder_and_gradios_cache(model: Path, tmp_path: Path, stop: int) -> None:
    # started as `python app.py &` from a script would be: SIGINT arrives ignored, and must still stop it
    instance = start_guarded(tmp_path, model, as_background_job=True)
    client = client_for(instance.app, tmp_path / "downloads")
    client.predict(seed=1, n=2, truncation=1.0, api_name="/generate")
    client.predict(photo=handle_file(write_photo(tmp_path / "photos")), api_name="/project")
    assert instance.files_on_disk() and list(instance.tmp.glob("dcgan-app-*"))
    instance.app.process.send_signal(stop)
    try:
        code = instance.app.process.wait(timeout=30)
    except subprocess.TimeoutExpired:  # say what the app was doing, not just that it hung
        instance.app.process.kill()
        pytest.fail(f"app.py still running 30 s after {signal.Signals(stop).name}:\n{instance.app.log_text()}")
    assert code == 0, instance.app.log_text()
    assert instance.files_on_disk() == [], instance.files_on_disk()
    assert not list(instance.tmp.glob("dcgan-app-*"))
    assert "Traceback" not in instance.app.log_text()
