"""An ASGI middleware in front of Gradio's upload routes: images only, size bounded.

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
"""

from __future__ import annotations

import asyncio
import re
from typing import Any, Awaitable, Callable

from .photos import ACCEPTED, sniff_format

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers around the file itself
MAX_FILES = 4  # per upload request; the page sends one


class UploadRefused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class UploadGuard:
    def __init__(self, app: ASGIApp, max_bytes: int, max_concurrent: int = 8) -> None:
        self.app = app
        self.max_body = max_bytes + MULTIPART_OVERHEAD
        self.max_bytes = max_bytes
        self.slots = asyncio.Semaphore(max_concurrent)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST":
            return await self.app(scope, receive, send)
        path = scope.get("path", "").rstrip("/")
        if path.endswith("/process_recording"):
            return await _reply(send, 404, "Not Found")
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
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise UploadRefused(400, "the upload was cut off")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise UploadRefused(413, f"photos may be at most {self.max_bytes // 2**20} MB")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        check_parts(body, match.group(1).encode("latin-1"))
        return body


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


async def _reply(send: Send, status: int, text: str) -> None:
    payload = text.encode("utf-8")
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})
