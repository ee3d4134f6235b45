"""Who uploaded which photo: every upload owned by the request that made it, bounded per client.

Gradio stores an upload at ``<cache>/<sha256 of its bytes>/<its file name>``, so two visitors
sending the same photo get the same file, and any path in the cache (a result another visitor
is looking at, the page's first paint) looks like an upload to a handler. So the route guard
rebuilds each upload's multipart body with a fresh, unguessable file name (images only, their
type from their first bytes), and this ledger records the files Gradio stored under those
names. ``/project`` then *claims* its photo: only a recorded upload can be claimed, only once,
and only a claimed file is ever deleted by the app. Nothing else in the cache is touched.

Each client (its address; behind a Space's proxy, the one the proxy saw) may hold a few
uploads in flight and a bounded volume per minute and unclaimed at once; every client together
a bounded number in flight and on disk. An upload nobody claims is deleted after
``ttl_s`` (the page claims its photo at once; an API call within its queue wait).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from ..photos import ACCEPTED, MAX_BYTES, photo_from_file, sniff_format

MAX_FILES = 4  # per upload request; the page sends one
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}


class UploadRefused(Exception):
    """A request the guard answers itself: ``status`` and a message for the client."""

    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.retry_after = status, message, retry_after


@dataclass(frozen=True)
class UploadPolicy:
    """How much uploading each client, and all of them, may do (see README: "Hardening")."""

    at_once: int = 8  # uploads being received, all clients
    per_client_at_once: int = 4
    bytes_per_minute: int = 40 * 2**20  # one client's volume over any 60 s
    pending_bytes: int = 256 * 2**20  # uploaded, not yet claimed, all clients (on disk)
    per_client_pending_bytes: int = 32 * 2**20
    ttl_s: float = 300.0  # an unclaimed upload is deleted after this


@dataclass
class _Upload:
    client: str
    size: int
    stored_at: float


@dataclass
class _Client:
    in_flight: int = 0
    sent: deque = field(default_factory=deque)  # (time, bytes) of the last minute's uploads


class UploadLedger:
    """The uploads this app stored, by path; safe to use from the event loop and handler threads."""

    def __init__(self, policy: UploadPolicy = UploadPolicy(), clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self._clock = clock
        self._lock = threading.Lock()
        self._uploads: dict[Path, _Upload] = {}
        self._clients: dict[str, _Client] = {}
        self._in_flight = 0

    # -- the upload route ----------------------------------------------------------------------

    @contextlib.contextmanager
    def admit(self, client: str, size: int) -> Iterator["Charge"]:
        """One upload of (at most) ``size`` bytes from ``client``, or UploadRefused (429: this client,
        503: everyone) saying why; the slot is held until the block ends."""
        self.sweep()
        with self._lock:
            state = self._clients.setdefault(client, _Client())
            self._check(client, state, size)
            charge = Charge(size, self._clock())
            state.sent.append(charge)
            state.in_flight += 1
            self._in_flight += 1
        try:
            yield charge
        finally:
            with self._lock:
                state.in_flight -= 1
                self._in_flight -= 1

    def _check(self, client: str, state: _Client, size: int) -> None:
        policy, now = self.policy, self._clock()
        while state.sent and state.sent[0].at < now - 60:
            state.sent.popleft()
        if self._in_flight >= policy.at_once:
            raise UploadRefused(503, "too many uploads at once; try again in a moment", retry_after=5)
        if state.in_flight >= policy.per_client_at_once:
            raise UploadRefused(429, f"at most {policy.per_client_at_once} uploads at once from one address",
                                retry_after=5)
        sent = sum(charge.size for charge in state.sent)
        if sent + size > policy.bytes_per_minute:
            wait = 60 - (now - state.sent[0].at) if state.sent else 60
            raise UploadRefused(429, f"{_mb(sent)} uploaded from this address in the last minute; at most "
                                     f"{_mb(policy.bytes_per_minute)} a minute: try again in {wait:.0f} s",
                                retry_after=wait)
        pending = sum(upload.size for upload in self._uploads.values() if upload.client == client)
        if pending + size > policy.per_client_pending_bytes:
            raise UploadRefused(429, f"{_mb(pending)} of photos from this address are uploaded but not used yet; "
                                     f"at most {_mb(policy.per_client_pending_bytes)}: use them or wait",
                                retry_after=30)
        if sum(upload.size for upload in self._uploads.values()) + size > policy.pending_bytes:
            raise UploadRefused(503, "too many uploaded photos are waiting to be used; try again in a minute",
                                retry_after=60)

    def record(self, client: str, paths: list[Path]) -> None:
        """Gradio stored these uploads (named by :func:`upload_name`) for ``client``: they may be claimed."""
        with self._lock:
            for path in paths:
                with contextlib.suppress(OSError):
                    self._uploads[path.resolve()] = _Upload(client, path.stat().st_size, self._clock())

    # -- the handlers -----------------------------------------------------------------------------

    def claim(self, path: str | os.PathLike) -> Path | None:
        """The upload at ``path``, now this caller's alone (it reads and then :func:`discard`\\ s it);
        None when ``path`` is no upload of this app, or one already claimed or expired."""
        self.sweep()
        try:
            key = Path(path).resolve()  # the same file, however the client spells its path
        except (OSError, ValueError):  # a NUL byte, a symlink loop
            return None
        with self._lock:
            upload = self._uploads.pop(key, None)
        return key if upload is not None else None

    def sweep(self) -> list[Path]:
        """Delete the uploads nobody claimed within ``ttl_s``."""
        cutoff = self._clock() - self.policy.ttl_s
        with self._lock:
            expired = [path for path, upload in self._uploads.items() if upload.stored_at < cutoff]
            for path in expired:
                del self._uploads[path]
            idle = [client for client, state in self._clients.items() if not state.in_flight and not state.sent]
            for client in idle:
                del self._clients[client]
        for path in expired:
            discard(path)
        return expired

    def pending(self) -> int:
        with self._lock:
            return len(self._uploads)


@dataclass
class Charge:
    """What one upload counts against its client's minute: the declared size, then what arrived."""

    size: int
    at: float


def upload_name(kind: str) -> str:
    """A fresh file name for an upload: nobody else's upload (or result) can have it."""
    return f"photo-{secrets.token_hex(16)}.{EXTENSIONS[kind]}"


def discard(path: Path) -> None:
    """Delete an upload and the folder Gradio made for it (only if nothing else is left in it)."""
    path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        path.parent.rmdir()


# -- the multipart body -----------------------------------------------------------------------------


def rebuild_upload(body: bytes, boundary: bytes) -> tuple[bytes, str, list[str]]:
    """The upload body as Gradio will store it: each file part an image (by its first bytes, 415
    otherwise), renamed :func:`upload_name`, under a fresh boundary; other parts dropped.

    Returns the new body, its Content-Type and the new names.
    """
    files = [(sniff_format(data[:16]), data) for data in file_parts(body, boundary)]
    if not files:
        raise UploadRefused(400, "no file in this upload")
    if any(kind is None for kind, _ in files):
        raise UploadRefused(415, f"only images can be uploaded here: {ACCEPTED}")
    names = [upload_name(kind) for kind, _ in files]
    fresh = secrets.token_hex(16).encode()
    while any(fresh in data for _, data in files):
        fresh = secrets.token_hex(16).encode()
    parts = [b"--" + fresh + b'\r\nContent-Disposition: form-data; name="files"; filename="' + name.encode()
             + b'"\r\nContent-Type: application/octet-stream\r\n\r\n' + data + b"\r\n"
             for name, (_, data) in zip(names, files)]
    return b"".join(parts) + b"--" + fresh + b"--\r\n", f"multipart/form-data; boundary={fresh.decode()}", names


def file_parts(body: bytes, boundary: bytes) -> list[bytes]:
    """The contents of a multipart body's file parts (those with a filename), at most MAX_FILES."""
    found = []
    for part in body.split(b"--" + boundary)[1:]:
        if part.startswith(b"--"):
            break  # the closing delimiter
        head, separator, data = part.partition(b"\r\n\r\n")
        if not separator:
            raise UploadRefused(400, "malformed multipart upload")
        if b"filename=" not in head.lower():
            continue  # a plain form field
        if len(found) == MAX_FILES:
            raise UploadRefused(400, f"at most {MAX_FILES} files per upload")
        found.append(data[:-2] if data.endswith(b"\r\n") else data)
    return found


def _mb(count: int) -> str:
    return f"{count / 2**20:.0f} MB"


def claimed_upload(photo: object, uploads: UploadLedger) -> Path:
    """The uploaded file behind a FileData value, claimed from the ledger of uploads (see dcgan_hf.serving.uploads)."""
    if photo is None:
        raise ValueError(f"upload a photo first ({ACCEPTED}, at most {MAX_BYTES // 2**20} MB)")
    path = photo.get("path") if isinstance(photo, dict) else None
    if not isinstance(path, str) or not path:
        raise ValueError("the photo must be an uploaded file")
    claimed = uploads.claim(path)
    if claimed is None or not claimed.is_file():
        raise ValueError("the photo must be a file uploaded for this request, and each upload is used once: "
                         "upload it again")
    return claimed


def read_photo(photo: object, uploads: UploadLedger) -> Any:
    """An uploaded photo's 64×64 crop (uint8 tensor): claimed from the ledger (this request's alone),
    size, type and dimensions checked first, file deleted. A path that is no unclaimed upload of this
    app is neither read nor deleted."""
    path = claimed_upload(photo, uploads)
    try:
        return photo_from_file(path).pixels
    finally:
        discard(path)


def crop_tensor(crop: Any) -> Any:
    """The session's photo crop (kept as a uint8 array in a gr.State) back as a tensor, checked."""
    array = np.asarray(crop)
    if array.dtype != np.uint8 or array.shape != (3, 64, 64):
        raise ValueError("upload the photo again")
    return torch.from_numpy(array.copy())
