"""Live mode's server side (dcgan_hf.serving.live): the exported model, its manifest, the GET-only routes,
the latent queries (the demo's checks and messages), where the runtime comes from.

The page itself is tested in a real browser in tests/test_live_browser.py.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import torch

from dcgan_hf import Generator, latent_token
from dcgan_hf.export import ORT_TELEMETRY_ENV
from dcgan_hf.images import to_uint8
from dcgan_hf.latent import latent, latents
from dcgan_hf.serving.live import (
    CDN,
    NPM_DIST,
    NPM_FOLDER,
    ORT_VERSION,
    RUNTIME_FILES,
    SCRIPT,
    LiveRoutes,
    LiveService,
    Runtime,
    runtime_problem,
    sri,
)
from dcgan_hf.sampling import render
from dcgan_hf.serving import GenerateRequest, ModelServer, fp32_on_cpu
from test_sampling import vivid

import onnx  # noqa: E402,F401  (requirements-test.txt installs the [onnx] extra: a broken install fails here)
import onnxruntime as ort  # noqa: E402
import onnxscript  # noqa: E402,F401

ROOT = Path(__file__).resolve().parent.parent
PASSED_ON = 299  # what the app behind the middleware answers


@pytest.fixture(scope="module")
def generator() -> Generator:
    torch.manual_seed(0)
    return vivid(Generator(ngf=16))


@pytest.fixture(scope="module")
def server(generator: Generator) -> Iterator[ModelServer]:
    served = ModelServer.serve(generator)
    yield served
    served.close()


@pytest.fixture(scope="module")
def service(server: ModelServer) -> LiveService:
    started = LiveService.start(server, "cdn")
    assert started.model is not None, started.problem
    return started


@pytest.fixture(scope="module")
def routes(service: LiveService) -> LiveRoutes:
    async def app(scope: dict, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": PASSED_ON, "headers": []})
        await send({"type": "http.response.body", "body": b"app"})

    return LiveRoutes(app, service)


def call(routes: LiveRoutes, path: str, query: str | bytes = b"", method: str = "GET") -> tuple[int, dict, bytes]:
    """One request through the middleware, as uvicorn would make it (the path as sent: no normalisation)."""
    messages: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        messages.append(message)

    raw = query.encode() if isinstance(query, str) else query
    scope = {"type": "http", "method": method, "path": path, "query_string": raw, "headers": [], "root_path": ""}
    asyncio.run(routes(scope, receive, send))
    headers = {key.decode(): value.decode() for key, value in messages[0]["headers"]}
    return messages[0]["status"], headers, b"".join(message.get("body", b"") for message in messages[1:])


def get_json(routes: LiveRoutes, path: str, query: str = "") -> tuple[int, dict]:
    status, headers, body = call(routes, path, query)
    assert headers["content-type"].startswith("application/json")
    return status, json.loads(body)


def exact(token: str) -> torch.Tensor:
    assert token.startswith("z2.")
    body = token[3:]
    return torch.from_numpy(np.frombuffer(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)), "<f4").copy())


# -- the model in the browser's form ------------------------------------------------------------------------


def test_the_manifest_holds_the_model_its_directions_and_a_check_face(service, server, generator):
    manifest = service.manifest()
    assert manifest["available"] and manifest["nz"] == 100 and manifest["nc"] == 3
    directions = manifest["directions"]
    vectors = np.frombuffer(base64.b64decode(directions["vectors"]), "<f4").reshape(directions["count"], 100)
    assert torch.equal(torch.from_numpy(vectors.copy()), server.directions.vectors)  # exact, in the page too
    assert directions["labels"] == [server.directions.label(index) for index in range(server.directions.count)]

    model = service.model
    assert manifest["model"]["sha256"] == hashlib.sha256(model.onnx).hexdigest()
    assert manifest["model"]["integrity"] == sri(model.onnx, "sha256")
    assert manifest["model"]["url"] == f"live/{model.filename}" and manifest["model"]["torch_difference"] <= 1e-4
    z = latents(list(range(16)), 100)
    (images,) = ort.InferenceSession(model.onnx, providers=["CPUExecutionProvider"]).run(["images"], {"z": z.numpy()})
    served = to_uint8(torch.from_numpy(images)).int()
    expected = render(generator, z).int()
    assert (served - expected).abs().le(2).float().mean() >= 0.999  # the parity the page must keep

    check = manifest["check"]
    assert torch.equal(exact(check["latent"]), latent(0, 100))
    pixels = np.frombuffer(base64.b64decode(check["pixels"]), np.uint8).reshape(64, 64, 3)
    assert np.array_equal(pixels, render(generator, latent(0, 100)[None])[0].permute(1, 2, 0).numpy())
    assert manifest["tolerance"] == {"levels": 2, "share": 0.999}
    runtime = manifest["runtime"]
    assert runtime["source"] == "cdn" and runtime["version"] == ORT_VERSION
    assert runtime["files"] == {name: {"url": CDN + name, "integrity": integrity}
                                for name, integrity in RUNTIME_FILES.items()}
    assert CDN.startswith("https://cdn.jsdelivr.net/npm/onnxruntime-web@1.31.1/")


def test_the_routes_serve_the_model_the_module_and_nothing_else(routes, service):
    status, manifest = get_json(routes, "/live/manifest.json")
    assert status == 200 and manifest == service.manifest()
    status, headers, body = call(routes, f"/live/{service.model.filename}")
    assert status == 200 and body == service.model.onnx and "immutable" in headers["cache-control"]
    assert headers["content-type"] == "application/octet-stream" and headers["x-content-type-options"] == "nosniff"
    status, headers, body = call(routes, "/live/live.js")
    assert status == 200 and headers["content-type"].startswith("text/javascript") and body == SCRIPT.read_bytes()
    status, headers, body = call(routes, "/live/manifest.json", method="HEAD")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 1000
    assert call(routes, "/gradio_api/info")[0] == PASSED_ON  # everything else is the app's
    assert call(routes, "/livestream")[0] == PASSED_ON


@pytest.mark.parametrize("path, method, query, status", [
    ("/live/manifest.json", "POST", "", 405),
    ("/live/manifest.json", "PUT", "", 405),
    ("/live/latent", "DELETE", "seed=1", 405),
    ("/live/model-0000000000000000.onnx", "GET", "", 404),  # only the app's own export
    (f"/live/ort/{ORT_VERSION}/ort.wasm.min.js", "GET", "", 404),  # this server's runtime is the CDN's
    (f"/live/ort/{ORT_VERSION}/../../../../etc/passwd", "GET", "", 404),
    ("/live/../app.py", "GET", "", 404),
    ("/live/%2e%2e/app.py", "GET", "", 404),
    ("/live/static/live.js", "GET", "", 404),
    ("/live/", "GET", "", 404),
    ("/live/latent", "GET", "seed=1&x=" + "a" * 5000, 414),
])
def test_the_routes_refuse_what_they_do_not_serve(routes, path, method, query, status):
    answer, headers, body = call(routes, path, query, method)
    assert answer == status, body
    assert headers["content-type"].startswith("application/json") and json.loads(body)["error"]
    if status == 405:
        assert headers["allow"] == "GET, HEAD"


# -- latents: the demo's own, exactly -----------------------------------------------------------------------


def test_latent_queries_give_the_servers_latents_exactly(routes, server):
    status, answer = get_json(routes, "/live/latent", "seed=7&truncation=0.7&latent=")
    assert status == 200 and answer["scaled"] and answer["truncation"] == 0.7
    assert torch.equal(exact(answer["latent"]), latent(7, 100))  # the page scales it as the server does
    token = latent_token.encode(torch.randn(100, generator=torch.Generator().manual_seed(1)))
    status, answer = get_json(routes, "/live/latent", f"seed=7&truncation=0.7&latent={token}")
    assert status == 200 and not answer["scaled"] and torch.equal(exact(answer["latent"]),
                                                                  latent_token.decode(token, 100))
    status, walk = get_json(routes, "/live/walk", f"seed_a=1&seed_b=2&more_seeds=3,%204&start_latent={token}"
                                                  "&frames=9&method=lerp&closed=true&truncation=0.8")
    assert status == 200 and walk["scaled"] == [False, True, True, True]
    rows = torch.stack([exact(row) for row in walk["keyframes"]])
    assert torch.equal(rows[0], latent_token.decode(token, 100)) and torch.equal(rows[1:], latents([2, 3, 4], 100))
    assert (walk["frames"], walk["method"], walk["closed"], walk["truncation"]) == (9, "lerp", True, 0.8)


@pytest.mark.parametrize("path, query, message", [
    ("/live/latent", "seed=banana", "seed must be a whole number"),
    ("/live/latent", "seed=-3", "seed must be a whole number"),
    ("/live/latent", "seed=1&truncation=9", "truncation must be in (0, 4]"),
    ("/live/latent", "seed=1&latent=z1.AAA", "latent holds a latent of 1 values"),
    ("/live/latent", "seed=1&latent=z1.!!!!", "latent is damaged"),
    ("/live/latent", "seed=1&latent=z2." + "A" * 534, "latent must start with 'z1.'"),  # exact tokens go out only
    ("/live/latent", "seed=1&seed=2", "give each field once"),
    ("/live/walk", "seed_a=1&seed_b=2&frames=999", "number of frames must be from 2 to 60"),
    ("/live/walk", "seed_a=1&seed_b=2&closed=maybe", "closed loop must be true or false"),
    ("/live/walk", "seed_a=1&seed_b=2&method=cubic", "method must be one of slerp, lerp"),
    ("/live/walk", "seed_a=1&seed_b=2&more_seeds=" + ",".join(["5"] * 20), "more seeds: at most 14 seeds"),
    ("/live/latent", b"seed=%ff%fe", "seed must be a whole number"),
])
def test_latent_queries_answer_bad_input_with_the_demos_messages(routes, path, query, message):
    status, headers, body = call(routes, path, query)
    assert status == 400 and message in json.loads(body)["error"], body
    assert get_json(routes, "/live/latent", "seed=1")[0] == 200  # and the next request is served


# -- preparing, and models that cannot go to a browser --------------------------------------------------------


def test_the_manifest_says_why_a_model_cannot_go_to_browsers(server):
    off = LiveService.start(server, "off")
    assert off.model is None and off.manifest() == {
        "available": False, "reason": "switched off on this server (--live-runtime off, or DCGAN_LIVE_RUNTIME=off)"}
    four_channels = ModelServer.serve(Generator(ngf=8, nc=4))
    try:
        refused = LiveService.start(four_channels, "cdn")
        answer = refused.manifest()
        assert not answer["available"] and "nc=4" in answer["reason"]
        routes = LiveRoutes(None, refused)
        assert get_json(routes, "/live/manifest.json") == (200, answer)
        assert call(routes, "/live/model-0000000000000000.onnx")[0] == 404
    finally:
        four_channels.close()


def test_the_served_weights_for_browsers_are_fp32_on_the_cpu(generator):
    assert fp32_on_cpu(generator, torch.device("cpu")) is generator
    half = Generator(ngf=8).half()
    copy = fp32_on_cpu(half, torch.device("cpu"))
    assert copy is not half and next(copy.parameters()).dtype == torch.float32
    assert next(half.parameters()).dtype == torch.float16  # the served copy is left as it is


def test_exact_tokens_hold_float32_values_bit_for_bit():
    z = torch.randn(100, generator=torch.Generator().manual_seed(3)) * 0.7
    assert torch.equal(exact(latent_token.encode_exact(z)), z)
    assert not torch.equal(latent_token.decode(latent_token.encode(z), 100), z)  # z1 tokens are float16
    with pytest.raises(ValueError, match="finite float32"):
        latent_token.encode_exact(torch.full((4,), float("nan")))


# -- the runtime: the pinned npm release, from here or from the CDN ------------------------------------------


def test_the_runtime_is_the_pinned_npm_release(tmp_path):
    package = json.loads((NPM_FOLDER / "package.json").read_text())
    lock = json.loads((NPM_FOLDER / "package-lock.json").read_text())
    assert package["dependencies"] == {"onnxruntime-web": ORT_VERSION}
    assert lock["packages"]["node_modules/onnxruntime-web"]["version"] == ORT_VERSION
    assert Runtime.resolve("off").source == "off" and Runtime.resolve("cdn").url("x.js") == CDN + "x.js"
    missing = Runtime.resolve(str(tmp_path))
    assert missing.source == "cdn" and "is missing" in missing.note
    if not NPM_DIST.is_dir():
        pytest.skip("web/node_modules is not installed: run `npm ci --prefix web` (the README's test command does)")
    assert runtime_problem(NPM_DIST) is None  # the SRI hashes pinned in live.py are the npm tarball's files
    assert Runtime.resolve("auto") == Runtime("local", NPM_DIST.resolve())
    assert Runtime.resolve("auto").url("ort.wasm.min.js") == f"live/ort/{ORT_VERSION}/ort.wasm.min.js"
    for name in RUNTIME_FILES:
        shutil.copy(NPM_DIST / name, tmp_path / name)
    assert Runtime.resolve(str(tmp_path)).source == "local"  # a folder of one's own
    with (tmp_path / "ort.wasm.min.js").open("a") as script:
        script.write("\n// changed\n")
    changed = Runtime.resolve(str(tmp_path))
    assert changed.source == "cdn" and "hash differs" in changed.note


def test_a_space_installs_what_live_mode_needs():
    def pins(name: str) -> dict[str, str]:
        lines = (NPM_FOLDER.parent / name).read_text().splitlines()
        return dict(line.split("==") for line in (line.split("#")[0].strip() for line in lines) if "==" in line)

    onnx = pins("requirements-onnx.txt")
    assert set(onnx) == {"onnx", "onnxscript", "onnxruntime"}
    assert {name: pins("requirements.txt")[name] for name in onnx} == onnx  # the Space exports the model too


def test_preparing_the_model_never_changes_the_faces_served_meanwhile(generator):
    """torch.export switches oneDNN off for the whole process while it traces: a face drawn by another
    thread meanwhile took other kernels (1/255 flips). The export waits its turn on the inference worker."""
    served = ModelServer.serve(generator)
    try:
        request = GenerateRequest.parse(123, 16, 1.0)  # 16 faces: flips showed in ~1 grid of 5
        expected = served.generate(request).images
        prepared: list[LiveService] = []
        exporting = threading.Thread(target=lambda: prepared.append(LiveService.start(served, "cdn")))
        exporting.start()
        drawn = 0
        while exporting.is_alive():
            assert torch.equal(served.generate(request).images, expected)
            drawn += 1
        assert prepared[0].model is not None and drawn > 0
    finally:
        served.close()


def test_the_start_up_export_leaves_nothing_in_the_temporary_folder(tmp_path):
    """onnxruntime's telemetry wrote $TMPDIR/.ses when imported: a file the app's shutdown never removes."""
    script = ("from dcgan_hf import Generator; from dcgan_hf.serving.live import LiveModel, Runtime; "
              "generator = Generator(ngf=8).eval(); LiveModel.build(generator, generator.directions, Runtime('cdn'))")
    env = {key: value for key, value in os.environ.items() if key != ORT_TELEMETRY_ENV}
    env.update(TMPDIR=str(tmp_path), PYTHONPATH=str(ROOT))
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=300)
    assert [path for path in tmp_path.rglob("*") if path.is_file()] == []
