"""An ASGI middleware in front of Gradio's routes that would skip the queue or take any file.

Every model call must wait its turn in the queue (4 running, 64 waiting). Gradio's direct
``POST /gradio_api/run/<name>`` (and its ``/api/<name>`` alias) runs a function at once;
``queue(api_open=False)`` closes it for queued events, but browser-only events (a bit of
JavaScript, no Python) still answer there with ``{"error": null}``. So the guard closes both
prefixes outright, with a message saying where to go instead (``gradio_client``, or
``/gradio_api/call/<name>``, which queues). A ``call`` to a name the app does not have gets a
404 naming the ones it has (Gradio itself answers a bare 500).

Gradio's ``/gradio_api/upload`` stores any file a client sends (its ``max_file_size`` caps
the size, nothing checks the type), and ``/gradio_api/process_recording`` takes videos for a
screen recorder this app does not have. The demo's only upload is a face photo, so:

- ``process_recording`` answers 404;
- an upload whose declared length exceeds the cap is refused (413) before a byte is read;
- otherwise the body is read into memory (at most the cap, counted as it arrives: a lying
  or missing Content-Length gets no further), every file part must start with the magic
  bytes of a JPEG, PNG or WebP (415 otherwise), and only then is the body passed on;
- at most ``max_concurrent`` uploads are held in memory at once (503 beyond), so memory
  stays bounded by ``max_concurrent × max_bytes``.

A queued call (``/gradio_api/queue/join``, ``/gradio_api/call/<name>``) carries JSON only: it
is bounded to 256 kB, and a file given by URL instead of by upload is refused, since Gradio
would download it into its cache, at any size, before the handler runs.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any, Awaitable, Callable, Collection

from .photos import ACCEPTED, sniff_format

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers around the file itself
MAX_FILES = 4  # per upload request; the page sends one
MAX_JOIN_BYTES = 256 * 1024  # a queued call's JSON: values and file references, never file contents
DIRECT_CALLS_CLOSED = (
    '{"error": "direct calls skip the queue and are closed here: use gradio_client, '
    'or POST /gradio_api/call/<name> and read the result from its event stream"}'
)


class UploadRefused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class RouteGuard:
    def __init__(
        self, app: ASGIApp, max_bytes: int, max_concurrent: int = 8, api_names: Collection[str] | None = None
    ) -> None:
        self.app = app
        self.api_names = set(api_names) if api_names is not None else None
        self.max_body = max_bytes + MULTIPART_OVERHEAD
        self.max_bytes = max_bytes
        self.slots = asyncio.Semaphore(max_concurrent)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST":
            return await self.app(scope, receive, send)
        path = scope.get("path", "").rstrip("/")
        if path.endswith("/process_recording"):
            return await _reply(send, 404, "Not Found")
        if re.search(r"/gradio_api/(run|api)/", path + "/"):
            return await _reply(send, 404, DIRECT_CALLS_CLOSED, "application/json")
        call = re.search(r"/gradio_api/call/(?:v2/)?([^/]+)$", path)
        if call and self.api_names is not None and call.group(1) not in self.api_names:
            # Gradio answers an unknown name with a bare 500
            message = json.dumps({"error": f"no endpoint named {call.group(1)[:60]!r}; "
                                           f"this app has {', '.join(sorted(self.api_names))}"})
            return await _reply(send, 404, message, "application/json")
        if call or path.endswith("/gradio_api/queue/join"):
            try:
                body = await _read_body(receive, MAX_JOIN_BYTES, "a request")
                check_no_remote_files(body)
            except UploadRefused as refused:
                return await _reply(send, refused.status, json.dumps({"error": refused.message}), "application/json")
            return await self.app(scope, _replay(body, receive), send)
        if not path.endswith("/gradio_api/upload"):
            return await self.app(scope, receive, send)
        if self.slots.locked():
            return await _reply(send, 503, "too many uploads at once; try again in a moment")
        async with self.slots:
            try:
                body = await self._checked_body(scope, receive)
            except UploadRefused as refused:
                return await _reply(send, refused.status, refused.message)
            await self.app(scope, _replay(body, receive), send)

    async def _checked_body(self, scope: Scope, receive: Receive) -> bytes:
        headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope.get("headers", [])}
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body:
            raise UploadRefused(413, f"photos may be at most {self.max_bytes // 2**20} MB")
        match = re.search(r'boundary="?([^";,\s]{1,200})"?', headers.get("content-type", ""))
        if not headers.get("content-type", "").startswith("multipart/form-data") or not match:
            raise UploadRefused(400, "expected a multipart/form-data upload")
        body = await _read_body(receive, self.max_body, f"photos may be at most {self.max_bytes // 2**20} MB")
        check_parts(body, match.group(1).encode("latin-1"))
        return body


async def _read_body(receive: Receive, limit: int, what: str) -> bytes:
    """The whole request body, counted as it arrives: more than ``limit`` bytes is a 413."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise UploadRefused(400, "the request was cut off")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            message = what if what.startswith("photos") else f"{what} may be at most {limit // 1024} kB"
            raise UploadRefused(413, message)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def check_no_remote_files(body: bytes) -> None:
    """A queued call may name files only by the path of an upload: Gradio would fetch a URL given as
    a file's ``path`` (with no size limit) into its cache before any handler could check it."""
    try:
        payload = json.loads(body)
    except ValueError:
        return  # not JSON: Gradio answers that itself
    pending = [payload]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            location = item.get("path")
            if isinstance(location, str) and re.match(r"\s*(https?|ftp)://", location, re.IGNORECASE):
                raise UploadRefused(400, "files must be uploaded (gradio_client's handle_file does it); "
                                         "URLs are not fetched")
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)


def check_parts(body: bytes, boundary: bytes) -> None:
    """Every file part of a multipart body must be a JPEG, PNG or WebP image (by its first bytes)."""
    files = 0
    for part in body.split(b"--" + boundary)[1:]:
        if part.startswith(b"--"):
            break  # the closing delimiter
        head, separator, data = part.partition(b"\r\n\r\n")
        if not separator:
            raise UploadRefused(400, "malformed multipart upload")
        if b"filename=" not in head.lower():
            continue  # a plain form field
        files += 1
        if files > MAX_FILES:
            raise UploadRefused(400, f"at most {MAX_FILES} files per upload")
        if sniff_format(data[:16]) is None:
            raise UploadRefused(415, f"only images can be uploaded here: {ACCEPTED}")


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: wait for the client's disconnect, as usual

    return replay


async def _reply(send: Send, status: int, text: str, media_type: str = "text/plain") -> None:
    payload = text.encode("utf-8")
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", f"{media_type}; charset=utf-8".encode()),
                            (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})
