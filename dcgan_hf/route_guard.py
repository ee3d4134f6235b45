"""An ASGI middleware in front of every Gradio route: bodies bounded and timed, the queue never
skipped, uploads owned and bounded per client, calls checked before Gradio sees them.

- **Every request's body** is bounded before it is read: a declared length over the bound is
  refused at once (413), and the body is counted as it arrives (a missing or lying length gets
  no further); it must keep arriving (408 after ``read_timeout_s`` without data, or when it is
  slower than ``min_rate`` overall), so a stalled client cannot hold a slot. The bound is
  ``max_body_bytes`` (256 kB: JSON values and file references, never file contents) on every
  route, ``/gradio_api/reset``, ``/cancel``, ``/component_server``, ``/login`` included, and
  one photo (plus the multipart framing) on the upload route.
- **Direct calls** (``POST /gradio_api/run/<name>``, ``/api/<name>``) run a function without
  queueing; they are closed with a message saying where to go instead (``gradio_client``, or
  ``/gradio_api/call/<name>``, which queues). ``/gradio_api/process_recording`` (a screen
  recorder this app does not have) answers 404.
- **Calls** (``/gradio_api/call/[v2/]<name>``, ``/queue/join``) are checked against the app's own
  API (:class:`dcgan_hf.api_calls.ApiShapes`): an unknown name, a wrong number of values, an
  unknown keyword, a file given by URL each get a 4xx and one sentence.
- **Uploads** are images only (by their first bytes), renamed to fresh names and recorded in an
  :class:`dcgan_hf.uploads.UploadLedger`, so each belongs to the request that made it; each
  client may have a few in flight and a bounded volume a minute (:class:`UploadPolicy`).

Every bound is a :class:`GuardSettings` field, read from ``DCGAN_*`` environment variables
(README, "Hardening").
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Awaitable, Callable, Mapping

from .api_calls import ApiShapes
from .photos import MAX_BYTES
from .uploads import Charge, UploadLedger, UploadPolicy, UploadRefused, rebuild_upload

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

logger = logging.getLogger(__name__)
MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers around the file itself
MAX_RESPONSE_HELD = 1 << 20  # an upload's answer (a JSON list of paths) is held until it is recorded
DIRECT_CALLS_CLOSED = ("direct calls skip the queue and are closed here: use gradio_client, "
                       "or POST /gradio_api/call/<name> and read the result from its event stream")

# environment variable → (GuardSettings field, scale to the field's unit)
ENVIRONMENT = {
    "DCGAN_MAX_BODY_KB": ("max_body_bytes", 1024),
    "DCGAN_READ_TIMEOUT_S": ("read_timeout_s", 1),
    "DCGAN_MIN_UPLOAD_KBPS": ("min_rate", 1024),
    "DCGAN_TRUSTED_PROXIES": ("trusted_proxies", 1),
    "DCGAN_UPLOADS_AT_ONCE": ("uploads.at_once", 1),
    "DCGAN_UPLOADS_PER_CLIENT": ("uploads.per_client_at_once", 1),
    "DCGAN_UPLOAD_MB_PER_MINUTE": ("uploads.bytes_per_minute", 2**20),
    "DCGAN_PENDING_UPLOAD_MB": ("uploads.pending_bytes", 2**20),
    "DCGAN_PENDING_UPLOAD_MB_PER_CLIENT": ("uploads.per_client_pending_bytes", 2**20),
    "DCGAN_UPLOAD_TTL_S": ("uploads.ttl_s", 1),
}


@dataclass(frozen=True)
class GuardSettings:
    """The guard's bounds; defaults suit a public Space on one CPU."""

    max_photo_bytes: int = MAX_BYTES
    max_body_bytes: int = 256 * 1024  # every request but an upload
    read_timeout_s: float = 10.0  # the longest wait for the next part of a body
    min_rate: int = 32 * 1024  # bytes/s a body must average: an upload gets max(…) s to arrive
    trusted_proxies: int = 0  # proxies in front of the app whose X-Forwarded-For names the client
    uploads: UploadPolicy = field(default_factory=UploadPolicy)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "GuardSettings":
        """Defaults, with each ``DCGAN_*`` variable that is set (a Space trusts its one proxy)."""
        top: dict[str, Any] = {"trusted_proxies": 1 if environ.get("SPACE_ID") else 0}
        nested: dict[str, Any] = {}
        types = {spec.name: spec.type for spec in fields(cls)} | {spec.name: spec.type for spec in fields(UploadPolicy)}
        for variable, (name, scale) in ENVIRONMENT.items():
            if variable not in environ:
                continue
            key = name.split(".")[-1]
            try:
                value = float(environ[variable]) * scale
                if not 0 <= value < 2**62 or (value == 0 and key != "trusted_proxies"):
                    raise ValueError
            except ValueError:
                raise ValueError(f"{variable} must be a positive number, got {environ[variable]!r}") from None
            value = int(value) if types[key] in ("int", int) else value
            (nested if name.startswith("uploads.") else top)[key] = value
        return cls(**top, uploads=UploadPolicy(**nested))


class RouteGuard:
    def __init__(self, app: ASGIApp, settings: GuardSettings | None = None, shapes: ApiShapes | None = None,
                 ledger: UploadLedger | None = None) -> None:
        self.app = app
        self.settings = settings or GuardSettings()
        self.shapes = shapes
        self.ledger = ledger or UploadLedger(self.settings.uploads)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "").rstrip("/")
        post = scope.get("method") == "POST"
        try:
            if post and path.endswith("/process_recording"):
                raise UploadRefused(404, "Not Found")
            if post and re.search(r"/gradio_api/(run|api)/", path + "/"):
                raise UploadRefused(404, DIRECT_CALLS_CLOSED)
            if post and path.endswith("/gradio_api/upload"):
                return await self._upload(scope, receive, send)
            if not _has_body(scope):
                return await self.app(scope, receive, send)
            limit = self.settings.max_body_bytes
            body = await self._read(scope, receive, limit, f"a request's body may be at most {limit // 1024} kB")
            if post and self.shapes is not None:
                self.shapes.check(path, body)
        except UploadRefused as refused:
            if refused.status in (429, 503):  # a proxy count set wrong shows here: every refusal from one address
                logger.warning("refused %s from %s: %s", path, client_address(scope, self.settings.trusted_proxies),
                               refused.message)
            return await _reply(send, refused, json_body=not path.endswith("/gradio_api/upload"))
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, scope: Scope, receive: Receive, limit: int, too_big: str, charge: Charge | None = None
                    ) -> bytes:
        """The whole body, refused (413) past ``limit`` and (408) when it stops or crawls; ``charge``
        ends up at the bytes that arrived, whatever the outcome (a stalled upload costs what it sent)."""
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            raise UploadRefused(413, too_big)
        loop = asyncio.get_running_loop()
        timeout = self.settings.read_timeout_s
        deadline = loop.time() + timeout + (declared if declared is not None else limit) / self.settings.min_rate
        chunks: list[bytes] = []
        try:
            return await self._collect(receive, chunks, limit, too_big, deadline)
        finally:
            if charge is not None:
                charge.size = sum(map(len, chunks))

    async def _collect(self, receive: Receive, chunks: list[bytes], limit: int, too_big: str, deadline: float) -> bytes:
        loop, timeout, size = asyncio.get_running_loop(), self.settings.read_timeout_s, 0
        while True:
            wait = min(timeout, deadline - loop.time())
            try:
                if wait <= 0:
                    raise asyncio.TimeoutError
                message = await asyncio.wait_for(receive(), wait)
            except asyncio.TimeoutError:
                raise UploadRefused(408, f"the request's body stopped arriving (bodies must keep coming: at most "
                                         f"{timeout:g} s without data, at least {self.settings.min_rate // 1024} "
                                         f"kB/s overall)") from None
            if message["type"] == "http.disconnect":
                raise UploadRefused(400, "the request was cut off")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise UploadRefused(413, too_big)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _upload(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Read (bounded), check and rename the upload's files, let Gradio store them, record them."""
        limit = self.settings.max_photo_bytes + MULTIPART_OVERHEAD
        too_big = f"photos may be at most {self.settings.max_photo_bytes // 2**20} MB"
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            raise UploadRefused(413, too_big)
        content_type = _headers(scope).get("content-type", "")
        boundary = re.search(r'boundary="?([^";,\s]{1,200})"?', content_type)
        if not content_type.startswith("multipart/form-data") or not boundary:
            raise UploadRefused(400, "expected a multipart/form-data upload")
        client = client_address(scope, self.settings.trusted_proxies)
        with self.ledger.admit(client, declared if declared is not None else limit) as charge:
            body = await self._read(scope, receive, limit, too_big, charge)
            rebuilt, rebuilt_type, names = rebuild_upload(body, boundary.group(1).encode("latin-1"))
            del body
            headers = [(key, value) for key, value in scope.get("headers", [])
                       if key.lower() not in (b"content-type", b"content-length")]
            headers += [(b"content-type", rebuilt_type.encode()), (b"content-length", str(len(rebuilt)).encode())]
            held = _Held()
            await self.app({**scope, "headers": headers}, _replay(rebuilt, receive), held.send)
        self.ledger.record(client, held.stored_paths(set(names)))  # before the client learns the paths
        await held.release(send)


class _Held:
    """An upload's response, kept until the files it names are recorded (it is a short JSON list)."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.size = 0

    async def send(self, message: Message) -> None:
        self.size += len(message.get("body", b""))
        if self.size > MAX_RESPONSE_HELD:
            raise RuntimeError("an upload's response was far larger than a list of paths")
        self.messages.append(message)

    def stored_paths(self, names: set[str]) -> list[Path]:
        start = next((message for message in self.messages if message["type"] == "http.response.start"), None)
        if start is None or start.get("status") != 200:
            return []
        try:
            paths = json.loads(b"".join(message.get("body", b"") for message in self.messages[1:]))
        except ValueError:
            return []
        return [Path(path) for path in paths if isinstance(path, str) and Path(path).name in names] \
            if isinstance(paths, list) else []

    async def release(self, send: Send) -> None:
        for message in self.messages:
            await send(message)


def client_address(scope: Scope, trusted_proxies: int) -> str:
    """Who sent the request: the peer, or, behind ``trusted_proxies`` proxies, the address the
    outermost trusted one saw (the entry it appended to X-Forwarded-For; earlier ones are the client's word)."""
    peer = str((scope.get("client") or ("unknown", 0))[0])
    if trusted_proxies <= 0:
        return peer
    hops = [hop.strip() for key, value in scope.get("headers", []) if key.lower() == b"x-forwarded-for"
            for hop in value.decode("latin-1").split(",") if hop.strip()]
    return hops[-trusted_proxies] if len(hops) >= trusted_proxies else peer


def _headers(scope: Scope) -> dict[str, str]:
    return {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope.get("headers", [])}


def _content_length(scope: Scope) -> int | None:
    declared = _headers(scope).get("content-length", "").strip()
    return int(declared) if declared.isdigit() and len(declared) < 19 else None


def _has_body(scope: Scope) -> bool:
    """Whether the request says it has a body (a length, or chunked): without either, HTTP says it has none."""
    headers = _headers(scope)
    return "transfer-encoding" in headers or headers.get("content-length", "0").strip() not in ("", "0")


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: wait for the client's disconnect, as usual

    return replay


async def _reply(send: Send, refused: UploadRefused, json_body: bool) -> None:
    text = json.dumps({"error": refused.message}) if json_body else refused.message
    media_type = "application/json" if json_body else "text/plain"
    payload = text.encode("utf-8")
    headers = [(b"content-type", f"{media_type}; charset=utf-8".encode()),
               (b"content-length", str(len(payload)).encode())]
    if refused.retry_after is not None:
        headers.append((b"retry-after", str(max(1, round(refused.retry_after))).encode()))
    await send({"type": "http.response.start", "status": refused.status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
