"""Live mode: the generator runs in the visitor's browser, with ONNX Runtime Web (issue 18).

A free Space has two CPU cores for every visitor at once, and a queued call costs ~80 ms before
any work, so a slider that asks the server on every move feels sticky. The generator is tiny
(4.4 MB at width 32): the app exports it to ONNX once, at start-up (:func:`dcgan_hf.export.onnx_bytes`,
checked against PyTorch; :meth:`LiveService.start`), and the page draws slider drags
and latent walks itself, every animation frame, with ONNX Runtime Web (WASM with SIMD; threads
when the page is cross-origin isolated). Releasing a slider and the usual buttons still go
through the server, for the canonical PNG/GIF downloads and the URL state.

The routes, all under ``/live/`` (:class:`LiveRoutes`; GET or HEAD only, a fixed set of names:
nothing from the URL ever becomes a file path; query strings bounded):

- ``live.js``: the ES module the Edit and Interpolate tabs' panels import (package data);
- ``manifest.json``: nz, the directions (float32, exact), the model's URL and SHA-256, where the
  runtime comes from with its SRI hashes, and a check face the browser must reproduce before it
  lets live mode on;
- ``model-<sha256>.onnx``: the exported graph: the app's own artifact, never an upload;
- ``ort/<version>/<file>``: ONNX Runtime Web from a local npm copy (``web/``), when there is one;
- ``latent`` and ``walk``: the Edit tab's face and a walk's keyframes, read with the demo's own
  parsers (a bad seed or a tampered token gets their one-line message) and handed out as exact
  latent tokens (:func:`dcgan_hf.latent_token.encode_exact`): a seed is the same face in the
  browser as on the server.

The browser computes only ``G(z·t + Σ amountᵢ·dᵢ)`` and slerp/lerp paths, with the library's
float32/float64 steps (:meth:`Directions.apply`, :func:`dcgan_hf.latent.path`), and turns
outputs into pixels as :func:`dcgan_hf.images.to_uint8` does (round half up).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable
from urllib.parse import parse_qs

import torch

from .. import latent_token
from ..directions import Directions
from ..export import ExportError, onnx_bytes
from ..latent import latent, latents
from ..sampling import render

if TYPE_CHECKING:
    from .server import ModelServer

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PREFIX = "/live/"
ORT_VERSION = "1.31.1"  # web/package.json pins the same version; tests/test_live.py checks both
CDN = f"https://cdn.jsdelivr.net/npm/onnxruntime-web@{ORT_VERSION}/dist/"
# Subresource integrity of the three files the page loads (sha384 of the npm tarball's files; a CDN
# or a local copy that serves anything else is refused by the browser)
RUNTIME_FILES: dict[str, str] = {
    "ort.wasm.min.js": "sha384-tNxIwEqSlcdvKtUte98AsccPbDKM958LBXB/+3BLS42TTihXHKTWgdqPqXI/lot8",
    "ort-wasm-simd-threaded.mjs": "sha384-L9olMNCg9w3FaNhr+m7EAeeiUpM5zy2Nlh6APnoogtFXjsL4ZZZRXlYhSVJc1r3j",
    "ort-wasm-simd-threaded.wasm": "sha384-bQJgW/bZhNOlc9KU45Zu0dyd0EFfNpkOZjfHyH/90dkZQSBBGkFTsAJaabSyYA4Z",
}
RUNTIME_MAX_BYTES = 64 * 2**20  # the wasm is 14.8 MB
NPM_FOLDER = Path(__file__).resolve().parents[2] / "web"  # `npm ci` there installs the runtime
NPM_DIST = NPM_FOLDER / "node_modules" / "onnxruntime-web" / "dist"
RUNTIME_ENV = "DCGAN_LIVE_RUNTIME"  # auto (default), cdn, off, or a folder holding the files above
SCRIPT = Path(__file__).resolve().parents[1] / "static" / "live.js"
MAX_MODEL_BYTES = 64 * 2**20  # width 32: 4.4 MB, width 64: 14 MB; a bigger model is not sent to browsers
MAX_QUERY_BYTES = 4096  # a walk's query with two latent tokens is ~700 bytes
CHECK_SEED = 0  # the face the browser must reproduce before live mode turns on
TOLERANCE_LEVELS, TOLERANCE_SHARE = 2, 0.999  # ≥ 99.9 % of its pixels within 2/255 of the server's
IMMUTABLE = "public, max-age=31536000, immutable"  # names that carry a version or a hash


def sri(data: bytes, algorithm: str = "sha384") -> str:
    """A subresource-integrity value (``sha384-…``) for ``data``."""
    return f"{algorithm}-" + base64.b64encode(hashlib.new(algorithm, data).digest()).decode("ascii")


def runtime_problem(folder: Path) -> str | None:
    """Why ``folder`` cannot serve the pinned runtime (a missing file, or other bytes), or None."""
    for name, integrity in RUNTIME_FILES.items():
        path = folder / name
        if not path.is_file():
            return f"{path} is missing"
        if path.stat().st_size > RUNTIME_MAX_BYTES:
            return f"{path} is larger than any onnxruntime-web {ORT_VERSION} file"
        if sri(path.read_bytes()) != integrity:
            return f"{path} is not onnxruntime-web {ORT_VERSION}'s (its hash differs)"
    return None


@dataclass(frozen=True)
class Runtime:
    """Where the page loads ONNX Runtime Web from: this app (``local``), the CDN, or nowhere (``off``)."""

    source: str
    folder: Path | None = None
    note: str = ""

    @classmethod
    def resolve(cls, setting: str | None = None) -> "Runtime":
        """``auto``: the npm copy in ``web/`` when it holds the pinned files, else the CDN; ``cdn``;
        ``off``; or a folder, which must hold the pinned files (else the CDN, with a warning)."""
        setting = (os.environ.get(RUNTIME_ENV, "auto") if setting is None else setting).strip() or "auto"
        if setting == "off":
            return cls("off", note=f"switched off on this server (--live-runtime off, or {RUNTIME_ENV}=off)")
        if setting == "cdn":
            return cls("cdn")
        folder = NPM_DIST if setting == "auto" else Path(setting).expanduser()
        problem = runtime_problem(folder)
        if problem is None:
            return cls("local", folder.resolve())
        if setting != "auto":
            logger.warning("live mode: %s; the page loads ONNX Runtime Web from %s instead", problem, CDN)
        return cls("cdn", note=problem)

    def url(self, name: str) -> str:
        """A runtime file's URL: absolute on the CDN, relative to the app's root when served here."""
        return CDN + name if self.source == "cdn" else f"{PREFIX[1:]}ort/{ORT_VERSION}/{name}"

    def describe(self) -> dict[str, Any]:
        files = {name: {"url": self.url(name), "integrity": integrity} for name, integrity in RUNTIME_FILES.items()}
        return {"source": self.source, "version": ORT_VERSION, "files": files}


# -- the model in the browser's form -------------------------------------------------------------


def float32_base64(values: torch.Tensor) -> str:
    return base64.b64encode(values.detach().to("cpu", torch.float32).contiguous().numpy().astype("<f4")
                            .tobytes()).decode("ascii")


def check_servable(generator: torch.nn.Module) -> None:
    """Live mode draws 1- or 3-channel faces from models a browser can download; ValueError otherwise."""
    if getattr(generator, "nc", None) not in (1, 3):
        raise ValueError(f"live mode draws grey or RGB faces; this model has nc={getattr(generator, 'nc', None)}")
    size = 4 * sum(parameter.numel() for parameter in generator.parameters())
    if size > MAX_MODEL_BYTES:
        raise ValueError(f"the model is {size / 2**20:.0f} MB; live mode sends at most "
                         f"{MAX_MODEL_BYTES // 2**20} MB to a browser")


@dataclass(frozen=True)
class LiveModel:
    """The exported graph, its SHA-256, and the manifest that tells the page how to use it."""

    onnx: bytes
    sha256: str
    manifest: dict[str, Any]

    @property
    def filename(self) -> str:
        return f"model-{self.sha256[:16]}.onnx"

    @classmethod
    def build(cls, generator: torch.nn.Module, directions: Directions, runtime: Runtime) -> "LiveModel":
        """Export ``generator`` (fp32, CPU) and describe it; ExportError or ValueError say why not."""
        check_servable(generator)
        data, difference = onnx_bytes(generator)
        digest = hashlib.sha256(data).hexdigest()
        check_z = latent(CHECK_SEED, generator.nz)
        check_pixels = render(generator, check_z[None])[0].permute(1, 2, 0).contiguous().numpy()
        manifest = {
            "format": 1,
            "available": True,
            "nz": generator.nz,
            "nc": generator.nc,
            "model": {"url": f"{PREFIX[1:]}model-{digest[:16]}.onnx", "sha256": digest,
                      "integrity": sri(data, "sha256"), "bytes": len(data), "torch_difference": difference,
                      "input": "z", "output": "images"},
            "directions": {"count": directions.count, "method": directions.method,
                           "labels": [directions.label(index) for index in range(directions.count)],
                           "vectors": float32_base64(directions.vectors)},
            "check": {"latent": latent_token.encode_exact(check_z),
                      "pixels": base64.b64encode(check_pixels.tobytes()).decode("ascii")},
            "tolerance": {"levels": TOLERANCE_LEVELS, "share": TOLERANCE_SHARE},
            "runtime": runtime.describe(),
        }
        return cls(data, digest, manifest)


# -- what the page asks for: latents, read with the demo's own checks -------------------------------


def _query_value(text: str) -> object:
    """A query parameter as the form would send it: whole numbers and decimals as numbers, the rest as text
    (so the demo's checks word their messages as they do for the form)."""
    if re.fullmatch(r"-?\d{1,20}", text):
        return int(text)
    if re.fullmatch(r"-?(\d{1,20}(\.\d{0,20})?|\.\d{1,20})([eE][-+]?\d{1,3})?", text):
        return float(text)
    return text


def _query_flag(text: str) -> object:
    return {"true": True, "1": True, "false": False, "0": False, "": False}.get(text.strip().lower(), text)


def face_latent(server: "ModelServer", query: dict[str, str]) -> dict[str, Any]:
    """The Edit tab's face before any edit: a seed's latent (the page scales it by the truncation,
    as ``FaceSource.latent`` does) or a latent token's. Same checks and messages as the tab."""
    from .steering import FaceSource  # imported where used: steering imports the requests module

    nz = server.generator.nz
    source = FaceSource.parse(_query_value(query.get("seed", "")), _query_value(query.get("truncation", "1")),
                              query.get("latent", ""), nz=nz)
    if source.token is not None:
        return {"latent": latent_token.encode_exact(latent_token.decode(source.token, nz)), "scaled": False,
                "truncation": 1.0}
    return {"latent": latent_token.encode_exact(latent(source.seed, nz)), "scaled": True,
            "truncation": source.truncation}


def walk_keyframes(server: "ModelServer", query: dict[str, str]) -> dict[str, Any]:
    """A walk's keyframes, unscaled (the page scales the seeds' rows by the truncation, as
    ``InterpolateRequest.keyframes`` does); the walk's other settings checked as the tab checks them."""
    from .requests import InterpolateRequest

    nz = server.generator.nz
    request = InterpolateRequest.parse(
        _query_value(query.get("seed_a", "")), _query_value(query.get("seed_b", "")), query.get("more_seeds", ""),
        _query_value(query.get("frames", "24")), query.get("method", "slerp"), _query_flag(query.get("closed", "")),
        _query_value(query.get("truncation", "1")), query.get("start_latent", ""), query.get("end_latent", ""),
        nz=nz)
    rows = latents(list(request.seeds), nz)
    scaled = [True] * len(rows)
    for index, token in ((0, request.start_latent), (1, request.end_latent)):
        if token is not None:
            rows[index], scaled[index] = latent_token.decode(token, nz), False
    return {"keyframes": [latent_token.encode_exact(row) for row in rows], "scaled": scaled,
            "frames": request.frames, "method": request.method, "closed": request.closed,
            "truncation": request.truncation}


QUERIES: dict[str, Callable[["ModelServer", dict[str, str]], dict[str, Any]]] = {
    "latent": face_latent, "walk": walk_keyframes}


# -- the service: the model prepared once, and the routes -------------------------------------------


@dataclass(frozen=True)
class LiveService:
    """The served model's live form (or why there is none), prepared once at start-up, and the page's module."""

    server: "ModelServer"
    runtime: Runtime
    model: LiveModel | None
    problem: str | None
    script: bytes = field(default_factory=SCRIPT.read_bytes, repr=False)

    @classmethod
    def start(cls, server: "ModelServer", runtime: str | None = None) -> "LiveService":
        """Export ``server``'s model for browsers, now (``runtime``: see :meth:`Runtime.resolve`).

        It runs before the app serves its first page (~2 s of CPU here), not beside it: on a 2-core
        machine an export in the background delayed the first paint by 1–2 s. It runs on the
        inference worker, whatever else calls the server: torch.export switches oneDNN and cuDNN off
        for the whole process while it traces, and faces drawn meanwhile by another thread take
        other kernels (1/255 flips in a third of the grids drawn during an export, seen here).
        """
        resolved = Runtime.resolve(runtime)
        if resolved.source == "off":
            return cls(server, resolved, None, _unavailable(resolved.note))
        generator = server.cpu_generator or server.generator
        try:
            model = server.worker.run(LiveModel.build, generator, server.directions, resolved)
        except (ExportError, ValueError) as error:  # no [onnx] extra, or a model browsers cannot get
            return cls(server, resolved, None, _unavailable(str(error)))
        except Exception as error:  # noqa: BLE001 - the app keeps serving without live mode, and says why
            logger.exception("live mode: preparing the model failed")
            return cls(server, resolved, None, _unavailable(f"exporting the model failed ({type(error).__name__})"))
        logger.info("live mode: %s ready (%.1f MB, |onnxruntime - torch| = %.2g), runtime from %s",
                    model.filename, len(model.onnx) / 2**20, model.manifest["model"]["torch_difference"],
                    resolved.source)
        return cls(server, resolved, model, None)

    def manifest(self) -> dict[str, Any]:
        """The manifest, or why live mode is not available."""
        if self.model is None:
            return {"available": False, "reason": self.problem or "live mode is not available"}
        return self.model.manifest


def _unavailable(problem: str) -> str:
    logger.warning("live mode is off: %s", problem)
    return problem


class LiveRoutes:
    """ASGI middleware answering ``/live/…`` (see the module docstring); everything else passes on."""

    def __init__(self, app: ASGIApp, service: LiveService) -> None:
        self.app, self.service = app, service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        root = scope.get("root_path", "")
        if root and path.startswith(root + "/"):
            path = path[len(root):]
        if not path.startswith(PREFIX):
            return await self.app(scope, receive, send)
        method = scope.get("method", "")
        if method not in ("GET", "HEAD"):
            return await _reply(send, 405, _json({"error": "live mode's files are read with GET"}), method,
                                headers={"allow": "GET, HEAD"})
        query = scope.get("query_string", b"")
        if len(query) > MAX_QUERY_BYTES:
            return await _reply(send, 414, _json({"error": f"at most {MAX_QUERY_BYTES} bytes of query"}), method)
        await self.answer(path[len(PREFIX):], query, method, send)

    async def answer(self, name: str, query: bytes, method: str, send: Send) -> None:
        service = self.service
        if name == "manifest.json":
            return await _reply(send, 200, _json(service.manifest()), method)
        if name == "live.js":
            return await _reply(send, 200, service.script, method, "text/javascript", cache="no-cache")
        model = service.model
        if model is not None and name == model.filename:
            return await _reply(send, 200, model.onnx, method, "application/octet-stream", cache=IMMUTABLE)
        runtime = service.runtime
        prefix = f"ort/{ORT_VERSION}/"
        if runtime.folder is not None and name.startswith(prefix) and name[len(prefix):] in RUNTIME_FILES:
            return await _send_file(send, runtime.folder / name[len(prefix):], method)
        if name in QUERIES:
            status, payload = await self.latents(QUERIES[name], query)
            return await _reply(send, status, _json(payload), method)
        return await _reply(send, 404, _json({"error": "no such live-mode file"}), method)

    async def latents(self, fn: Callable[["ModelServer", dict[str, str]], dict[str, Any]],
                      query: bytes) -> tuple[int, dict[str, Any]]:
        """Run a latent query on the inference worker (every torch call goes there); one-line errors."""
        server = self.service.server
        try:
            fields = parse_qs(query.decode("utf-8"), keep_blank_values=True, strict_parsing=False, max_num_fields=16)
            if any(len(values) > 1 for values in fields.values()):
                raise ValueError("give each field once")
            values = {key: values[0] for key, values in fields.items()}
            return 200, await asyncio.to_thread(server.worker.run, fn, server, values)
        except (ValueError, OverflowError, UnicodeDecodeError) as error:
            return 400, {"error": str(error) or type(error).__name__}
        except Exception as error:  # noqa: BLE001 - the server keeps serving; the page turns live mode off
            logger.exception("live mode: a latent query failed")
            return 500, {"error": f"the server could not do this ({type(error).__name__})"}


def _json(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode("utf-8")


async def _reply(send: Send, status: int, body: bytes, method: str, media_type: str = "application/json",
                 cache: str = "no-store", headers: dict[str, str] | None = None) -> None:
    await send({"type": "http.response.start", "status": status, "headers": _headers(len(body), media_type, cache,
                                                                                      headers)})
    await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})


def _headers(length: int, media_type: str, cache: str, extra: dict[str, str] | None = None) -> list[tuple[bytes, bytes]]:
    charset = "; charset=utf-8" if media_type.startswith(("text/", "application/json")) else ""
    headers = {"content-type": media_type + charset, "content-length": str(length), "cache-control": cache,
               "x-content-type-options": "nosniff", **(extra or {})}
    return [(key.encode("latin-1"), value.encode("latin-1")) for key, value in headers.items()]


async def _send_file(send: Send, path: Path, method: str, chunk: int = 2**20) -> None:
    """A runtime file (checked at start-up), in chunks read off the event loop."""
    media_type = {".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm"}[path.suffix]
    size = path.stat().st_size
    await send({"type": "http.response.start", "status": 200, "headers": _headers(size, media_type, IMMUTABLE)})
    if method == "HEAD":
        return await send({"type": "http.response.body", "body": b""})
    with path.open("rb") as stream:
        while True:
            data = await asyncio.to_thread(stream.read, chunk)
            more = len(data) == chunk
            await send({"type": "http.response.body", "body": data, "more_body": more})
            if not more:
                return


# -- the panels the Edit and Interpolate tabs show ------------------------------------------------

PANEL_CSS = """
.live-panel { display: flex; flex-direction: column; gap: 6px; }
.live-head { display: flex; gap: 10px; align-items: center; flex-wrap: wrap; }
.live-status { font-size: 0.85em; opacity: 0.8; }
.live-stage canvas { width: 192px; height: 192px; image-rendering: pixelated; border-radius: 4px; }
.live-transport { display: flex; gap: 8px; align-items: center; }
.live-transport input[type=range] { flex: 1; }
"""

_SWITCH = ('<div class="live-head"><label class="live-toggle"><input type="checkbox" class="live-switch" disabled> '
           'live: draw in this browser</label><span class="live-status" role="status">checking…</span></div>')
PANEL_TEMPLATES = {
    "edit": f'<div class="live-panel" data-kind="edit">{_SWITCH}<div class="live-stage" hidden>'
            '<canvas class="live-canvas" width="64" height="64" aria-label="the face, drawn live"></canvas>'
            '</div></div>',
    "walk": f'<div class="live-panel" data-kind="walk">{_SWITCH}<div class="live-stage" hidden>'
            '<canvas class="live-canvas" width="64" height="64" aria-label="the walk, drawn live"></canvas>'
            '<div class="live-transport"><button class="live-play" type="button">play</button>'
            '<input class="live-scrub" type="range" min="0" max="1000" step="1" value="0" aria-label="position">'
            '<span class="live-frame"></span></div></div></div>',
}

LOADER = """
const config = __CONFIG__;
const root = ((window.gradio_config && window.gradio_config.root) || (location.origin + location.pathname)).replace(/\\/?$/, "/");
import(root + "live/live.js?v=__VERSION__").then((live) => live.attach(element, config, root)).catch((error) => {
  const status = element.querySelector(".live-status");
  if (status) status.textContent = "live mode is not available here (" + ((error && error.message) || error) + ")";
});
"""


def panel_script(kind: str, ids: dict[str, Any]) -> str:
    """The ``js_on_load`` of a live panel: import live.js (its URL changes with its content, so a new
    version is never taken from a cache) and attach it to the tab's fields, named by their elem_ids."""
    if kind not in PANEL_TEMPLATES:
        raise ValueError(f"a live panel is one of {', '.join(PANEL_TEMPLATES)}, got {kind!r}")
    version = hashlib.sha256(SCRIPT.read_bytes()).hexdigest()[:12]
    return LOADER.replace("__CONFIG__", json.dumps({"kind": kind, **ids})).replace("__VERSION__", version)
