"""Publishing to the Hub in the background (``train.py --push-to-hub``): a push never blocks
and never kills training; failed pushes are retried, then reported (token redacted).

The calls into the Hub client (repo creation, uploads, tags) are :mod:`dcgan_hf.hub.client`'s."""

from __future__ import annotations

import logging
import os
import queue
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

from huggingface_hub import get_token
from huggingface_hub.utils import validate_repo_id

from .client import hub_api, publish_folder

if TYPE_CHECKING:  # a test may hand in its own client; it is made by dcgan_hf.hub.client
    from huggingface_hub import HfApi

GIT_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")

logger = logging.getLogger(__name__)


# -- publishing (train.py --push-to-hub) ----------------------------------------------------


@dataclass(frozen=True)
class PushResult:
    """How one push ended: the commit it made, or the last error (token redacted)."""

    label: str
    tag: str | None
    commit: str | None
    attempts: int
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.commit is not None


@dataclass(frozen=True)
class PushSummary:
    """Every finished push, and those still queued or running when ``close()`` stopped waiting.

    Iterating gives all of them in order (unfinished ones last, with ``ok`` False).
    """

    repo_id: str
    results: tuple[PushResult, ...]
    unfinished: tuple[PushResult, ...] = ()

    @property
    def succeeded(self) -> tuple[PushResult, ...]:
        return tuple(result for result in self.results if result.ok)

    @property
    def failed(self) -> tuple[PushResult, ...]:
        return tuple(result for result in self.results if not result.ok)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.unfinished

    def __iter__(self) -> Iterator[PushResult]:
        return iter(self.results + self.unfinished)

    def __len__(self) -> int:
        return len(self.results) + len(self.unfinished)


@dataclass(frozen=True, eq=False)
class _PushJob:
    label: str
    tag: str | None
    message: str
    staging: Path  # a private copy of the folder, deleted once the push has ended
    moved_tags: tuple[str, ...] = ()  # tags moved to this push's commit (e.g. "best")

    @property
    def folder(self) -> Path:
        return self.staging / "folder"


class HubPusher:
    """Publishes snapshots of a folder to a Hub repo from one background thread.

    Training must never wait for (or die of) the network: ``push()`` copies the folder and
    returns; the thread creates the repo once, then uploads and tags each snapshot in order,
    retrying a failed push with exponential backoff (``base_delay``, doubled per attempt,
    at most ``max_delay``). A push that still fails is logged and recorded, never raised.
    ``close()`` waits for the queued pushes (the final one included) and returns a summary.

    The token comes from the usual HF sources (``HF_TOKEN``, ``hf auth login``) unless one
    is given; it never appears in our logs. huggingface_hub itself already retries
    408/429/5xx answers inside one request, so these retries are for what outlasts that.
    """

    def __init__(
        self,
        repo_id: str,
        *,
        private: bool = False,
        token: str | None = None,
        api: HfApi | None = None,
        attempts: int = 5,
        base_delay: float = 5.0,
        max_delay: float = 300.0,
    ) -> None:
        validate_repo_id(repo_id)
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise ValueError(f"attempts must be a positive integer, got {attempts!r}")
        if not 0 <= base_delay <= max_delay:
            raise ValueError(f"need 0 <= base_delay <= max_delay, got {base_delay} and {max_delay}")
        self.repo_id, self.private = repo_id, private
        self.attempts, self.base_delay, self.max_delay = attempts, base_delay, max_delay
        self._api = api if api is not None else hub_api(token)
        self._jobs: queue.Queue[_PushJob | None] = queue.Queue()
        self._lock = threading.Lock()
        self._results: list[PushResult] = []
        self._unfinished: list[_PushJob] = []
        self._cancelled = threading.Event()
        self._closed = False
        self._repo_ready = False
        self._queued = 0
        self._worker = threading.Thread(target=self._run, name=f"hub-pusher:{repo_id}", daemon=True)
        self._worker.start()

    def push(self, folder: str | os.PathLike, *, tag: str | None = None, message: str | None = None,
             moved_tags: Sequence[str] = ()) -> None:
        """Queue a snapshot of ``folder`` (copied now, so the caller may keep writing into it).

        ``tag`` is created on the push's commit (kept if it exists); each of ``moved_tags``
        (``best``) is moved there from wherever it pointed.
        """
        if self._closed:
            raise RuntimeError(f"this HubPusher for {self.repo_id} is closed")
        source = Path(folder)
        if not source.is_dir():
            raise NotADirectoryError(f"nothing to push: {source} is not a folder")
        for name in ([tag] if tag is not None else []) + list(moved_tags):
            if not GIT_TAG.fullmatch(name) or ".." in name or name.endswith((".lock", "/")):
                raise ValueError(f"invalid tag {name!r}: use letters, digits and . _ - / (e.g. 'epoch-5')")
        self._queued += 1
        label = tag or message or f"push {self._queued}"
        staging = Path(tempfile.mkdtemp(prefix="dcgan-hf-push-"))
        try:
            shutil.copytree(source, staging / "folder")
        except OSError as error:  # e.g. a full disk: this push fails, training goes on
            shutil.rmtree(staging, ignore_errors=True)
            reason = self._redact(error)
            logger.error("could not snapshot %s for push %r to %s: %s", source, label, self.repo_id, reason)
            with self._lock:
                self._results.append(PushResult(label, tag, None, 0, reason))
            return
        job = _PushJob(label, tag, message or f"Upload {label}", staging, tuple(moved_tags))
        with self._lock:
            self._unfinished.append(job)
        self._jobs.put(job)

    def close(self, timeout: float | None = None) -> PushSummary:
        """Wait (at most ``timeout`` seconds) for the queued pushes; what is left is cancelled."""
        if not self._closed:
            self._closed = True
            self._jobs.put(None)
        self._worker.join(timeout)
        if self._worker.is_alive():
            self._cancelled.set()
            logger.warning(
                "stopped waiting for Hub pushes to %s after %s s; unfinished: %s",
                self.repo_id, timeout, ", ".join(result.label for result in self.summary().unfinished),
            )
        return self.summary()

    def summary(self) -> PushSummary:
        with self._lock:
            unfinished = tuple(
                PushResult(job.label, job.tag, None, 0, "not finished when close() stopped waiting")
                for job in self._unfinished
            )
            return PushSummary(self.repo_id, tuple(self._results), unfinished)

    def __enter__(self) -> "HubPusher":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                if self._cancelled.is_set():
                    result = PushResult(job.label, job.tag, None, 0, "cancelled: close() stopped waiting")
                else:
                    result = self._publish(job)
            finally:
                shutil.rmtree(job.staging, ignore_errors=True)
            with self._lock:
                self._results.append(result)
                self._unfinished.remove(job)

    def _publish(self, job: _PushJob) -> PushResult:
        for attempt in range(1, self.attempts + 1):
            try:
                if not self._repo_ready:
                    self._api.create_repo(self.repo_id, private=self.private, exist_ok=True)
                    self._repo_ready = True
                commit = publish_folder(self._api, self.repo_id, job.folder, message=job.message, tag=job.tag,
                                        moved_tags=job.moved_tags)
            except Exception as error:  # noqa: BLE001 - any failure (network, HTTP, disk) must not reach training
                reason = self._redact(error)
                if attempt == self.attempts or self._cancelled.is_set():
                    break
                delay = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
                logger.warning(
                    "push %r to %s failed (attempt %d/%d): %s; retrying in %.1f s",
                    job.label, self.repo_id, attempt, self.attempts, reason, delay,
                )
                if self._cancelled.wait(delay):
                    break
            else:
                logger.info("pushed %r to %s (commit %s)", job.label, self.repo_id, commit[:10])
                return PushResult(job.label, job.tag, commit, attempt)
        logger.error("giving up on push %r to %s after %d attempt(s): %s", job.label, self.repo_id, attempt, reason)
        return PushResult(job.label, job.tag, None, attempt, reason)

    def _redact(self, error: BaseException) -> str:
        """One line about ``error``, without any token we know of."""
        text = " ".join(f"{type(error).__name__}: {error}".split())[:500]
        for secret in (self._api.token, get_token()):
            if isinstance(secret, str) and secret:
                text = text.replace(secret, "hf_***")
        return text
