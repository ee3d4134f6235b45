"""A small in-memory fake of the Hugging Face Hub HTTP API, for tests that must stay offline.

Good enough for the real ``huggingface_hub`` client (2.4) to create repos, upload folders
(every file travels base64 inside the NDJSON commit: ``/preupload`` always answers
``uploadMode: "regular"``, so no LFS or Xet), tag, list refs/trees/commits and download
by branch, tag or commit sha. Each commit is an immutable snapshot of the repo's files.

Behaviour the tests lean on:

* writes (create/delete repo, commit, tag, branch) need an ``Authorization: Bearer …``
  header, as on the real Hub (any token is accepted; it is recorded with the request);
  private repos are invisible without one (401 ``RepoNotFound``);
* misses answer 404 with ``X-Error-Code: RepoNotFound`` / ``RevisionNotFound`` /
  ``EntryNotFound``, which the client maps onto its typed errors;
* every request is recorded (:attr:`HubServer.requests`), and failures or delays can be
  injected (:meth:`HubServer.fail_next`, :meth:`HubServer.slow_down`);
* :meth:`HubServer.down` closes the port for a while, so the client sees a Hub it cannot
  reach (not one that answers errors).

Model and dataset repos with namespaced ids (``user/name``) are served: a dataset repo answers
the same routes under ``/api/datasets/…`` and ``/datasets/…/resolve/…``, which is all the
``datasets`` library (5.x) needs for ``load_dataset("user/name")`` of a parquet repo (README
card, tree listing, paths-info, file downloads, ``dataset_info``). Internally a dataset repo is
keyed ``datasets/user/name``; the public helpers take ``repo_type="dataset"``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import json
import os
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator, Mapping
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

COMMIT_SHA = re.compile(r"[0-9a-f]{40}")
GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n"
DEFAULT_NAMESPACE = "user"
DATASET_PREFIX = "datasets/"


def repo_key(repo_id: str, repo_type: str | None = "model") -> str:
    """How the server files a repo: model ids as they are, dataset ids under ``datasets/``."""
    if repo_type in (None, "model"):
        return repo_id
    if repo_type == "dataset":
        return DATASET_PREFIX + repo_id
    raise ValueError(f"this fake Hub serves model and dataset repos, not {repo_type!r}")


def public_id(key: str) -> str:
    """The repo id the client knows (``user/name``) for a server key."""
    return key[len(DATASET_PREFIX):] if key.startswith(DATASET_PREFIX) else key


def git_blob_sha(content: bytes) -> str:
    """The git object id of a file: what the Hub sends as ETag and ``oid`` for non-LFS files."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass(frozen=True)
class Commit:
    sha: str
    parent: str | None
    title: str
    message: str
    files: Mapping[str, bytes]
    date: str


@dataclass
class Repo:
    repo_id: str
    private: bool
    created_at: str
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def resolve(self, revision: str) -> str | None:
        """Branch, tag (optionally as ``refs/heads/…``/``refs/tags/…``) or full commit sha → sha."""
        for prefix, refs in (("refs/heads/", self.branches), ("refs/tags/", self.tags)):
            if revision.startswith(prefix):
                return refs.get(revision[len(prefix) :])
        if revision in self.branches:
            return self.branches[revision]
        if revision in self.tags:
            return self.tags[revision]
        if COMMIT_SHA.fullmatch(revision) and revision in self.commits:
            return revision
        return None

    def history(self, sha: str) -> list[Commit]:
        commits = []
        while sha is not None:
            commit = self.commits[sha]
            commits.append(commit)
            sha = commit.parent
        return commits


@dataclass
class RecordedRequest:
    """One request as the server saw it; ``status`` is filled once it has been answered."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    status: int | None = None

    @property
    def route(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def token(self) -> str | None:
        """The bearer token sent, if any."""
        value = self.headers.get("authorization", "")
        return value[len("Bearer ") :] if value.startswith("Bearer ") else None


RequestMatch = str | Callable[[RecordedRequest], bool]


@dataclass
class _Injection:
    matches: Callable[[RecordedRequest], bool]
    remaining: int | None  # None: forever
    status: int | None  # None: answer normally (after the delay)
    delay: float


class HubHTTPError(Exception):
    """An error answer: status, the Hub's ``X-Error-Code`` (if any) and a message."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


def _not_found(what: str, code: str) -> HubHTTPError:
    return HubHTTPError(404, what, code)


def _as_predicate(match: RequestMatch) -> Callable[[RecordedRequest], bool]:
    if callable(match):
        return match
    return lambda request: match in request.route


class HubServer:
    """The fake Hub: state, request log, failure injection and the HTTP server around them."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1") -> None:
        self.host, self.port = host, port
        self._lock = threading.RLock()
        self._repos: dict[str, Repo] = {}
        self._requests: list[RecordedRequest] = []
        self._injections: list[_Injection] = []
        self._serial = itertools.count()  # never reset: commit shas stay unique across resets
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "HubServer":
        if self._server is not None:
            return self
        self._server = _Server((self.host, self.port), _Handler, self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"fake-hub-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the port and every open connection (state is kept; ``start()`` serves it again)."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._server.close_connections()
        self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    @contextlib.contextmanager
    def down(self) -> Iterator[None]:
        """The Hub is unreachable inside the block (connection refused), then back on the same port."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    def reset(self) -> None:
        """Forget every repo, recorded request and pending injection."""
        with self._lock:
            self._repos.clear()
            self._requests.clear()
            self._injections.clear()

    # -- test controls ---------------------------------------------------------------

    def fail_next(self, match: RequestMatch, times: int | None = 1, status: int = 503, delay: float = 0.0) -> None:
        """The next ``times`` requests matching ``match`` (``None``: all of them) answer ``status``.

        ``match`` is a substring of ``"METHOD /path"`` (e.g. ``"/commit/"``) or a predicate
        on :class:`RecordedRequest`.
        """
        with self._lock:
            self._injections.append(_Injection(_as_predicate(match), times, status, delay))

    def slow_down(self, match: RequestMatch, seconds: float, times: int | None = None) -> None:
        """Matching requests wait ``seconds`` before being answered normally."""
        with self._lock:
            self._injections.append(_Injection(_as_predicate(match), times, None, seconds))

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def requests_to(self, match: RequestMatch) -> list[RecordedRequest]:
        predicate = _as_predicate(match)
        return [request for request in self.requests if predicate(request)]

    def files(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> dict[str, bytes]:
        """The files of ``repo_id`` at ``revision`` (a copy)."""
        with self._lock:
            repo = self._repo(repo_key(repo_id, repo_type))
            return dict(repo.commits[self._resolve(repo, revision)].files)

    def refs(self, repo_id: str, repo_type: str = "model") -> dict[str, dict[str, str]]:
        with self._lock:
            repo = self._repo(repo_key(repo_id, repo_type))
            return {"branches": dict(repo.branches), "tags": dict(repo.tags)}

    # -- state (also used directly by tests to seed repos) -----------------------------

    def create_repo(self, repo_id: str, private: bool = False, repo_type: str = "model") -> Repo:
        key = repo_key(repo_id, repo_type)
        with self._lock:
            if key in self._repos:
                raise HubHTTPError(409, f"You already created this {repo_type} repo")
            repo = Repo(key, private, _now())
            self._repos[key] = repo
            self._add_commit(repo, "main", {".gitattributes": GITATTRIBUTES}, "initial commit", "")
            return repo

    def commit(
        self,
        repo_id: str,
        files: Mapping[str, bytes],
        message: str = "commit",
        branch: str = "main",
        deleted: tuple[str, ...] = (),
        repo_type: str = "model",
    ) -> str:
        """Commit ``files`` (added/overwritten) and ``deleted`` paths on ``branch``; returns the sha."""
        with self._lock:
            repo = self._repo(repo_key(repo_id, repo_type))
            head = repo.branches.get(branch)
            if head is None:
                raise _not_found(f"Revision Not Found: branch {branch!r} does not exist", "RevisionNotFound")
            tree = dict(repo.commits[head].files)
            for path in deleted:
                tree.pop(path, None)
            tree.update(files)
            return self._add_commit(repo, branch, tree, message, "")

    def _add_commit(self, repo: Repo, branch: str, tree: dict[str, bytes], title: str, description: str) -> str:
        parent = repo.branches.get(branch)
        digest = hashlib.sha1()
        for part in (repo.repo_id, parent or "", title, str(next(self._serial)), str(time.time_ns())):
            digest.update(part.encode() + b"\0")
        for path in sorted(tree):
            digest.update(f"{path}\0{git_blob_sha(tree[path])}\0".encode())
        sha = digest.hexdigest()
        repo.commits[sha] = Commit(sha, parent, title, description, dict(tree), _now())
        repo.branches[branch] = sha
        return sha

    def _repo(self, repo_id: str, request: RecordedRequest | None = None) -> Repo:
        repo = self._repos.get(repo_id)
        if repo is None:
            raise _not_found(f"Repository Not Found: {public_id(repo_id)}", "RepoNotFound")
        if repo.private and request is not None and request.token is None:
            raise HubHTTPError(401, "Invalid username or password.", "RepoNotFound")
        return repo

    @staticmethod
    def _resolve(repo: Repo, revision: str) -> str:
        sha = repo.resolve(revision)
        if sha is None:
            raise _not_found(f"Invalid rev id: {revision}", "RevisionNotFound")
        return sha

    # -- request handling ----------------------------------------------------------------

    def _record(self, request: RecordedRequest) -> _Injection | None:
        """Log the request; return the injection that applies to it, if any (and use it up)."""
        with self._lock:
            self._requests.append(request)
            for injection in self._injections:
                if injection.remaining != 0 and injection.matches(request):
                    if injection.remaining is not None:
                        injection.remaining -= 1
                    return injection
        return None

    def handle(self, request: RecordedRequest) -> tuple[int, dict[str, str], bytes]:
        """Answer one request: (status, headers, body)."""
        injection = self._record(request)
        if injection is not None:
            time.sleep(injection.delay)
            if injection.status is not None:
                return _error_response(HubHTTPError(injection.status, "injected failure"))
        try:
            for method, pattern, endpoint in ROUTES:
                if method == request.method or (method == "GET" and request.method == "HEAD"):
                    found = pattern.fullmatch(request.path)
                    if found:
                        params = {key: unquote(value) for key, value in found.groupdict().items() if value is not None}
                        if params.pop("kind", "models") == "datasets":
                            params["repo"] = DATASET_PREFIX + params["repo"]
                        with self._lock:
                            return endpoint(self, request, **params)
            raise HubHTTPError(404, f"no route for {request.route}")
        except HubHTTPError as error:
            return _error_response(error)

    def _require_token(self, request: RecordedRequest) -> None:
        if request.token is None:
            raise HubHTTPError(401, "Invalid credentials in Authorization header")

    # Endpoints: each returns (status, headers, body) and runs under the lock.

    def _api_create_repo(self, request: RecordedRequest) -> tuple[int, dict[str, str], bytes]:
        self._require_token(request)
        payload = _json_body(request)
        repo_type = payload.get("type") or "model"
        if repo_type not in ("model", "dataset"):
            raise HubHTTPError(400, "this fake Hub only serves model and dataset repos")
        repo_id = f"{payload.get('organization') or DEFAULT_NAMESPACE}/{payload['name']}"
        private = payload.get("visibility", "public") != "public" or bool(payload.get("private"))
        key = repo_key(repo_id, repo_type)
        url = f"{self.url}/{key}"
        if key in self._repos:
            return _json_response({"error": f"You already created this {repo_type} repo", "url": url}, status=409)
        self.create_repo(repo_id, private=private, repo_type=repo_type)
        return _json_response({"url": url, "name": repo_id, "id": repo_id})

    def _api_delete_repo(self, request: RecordedRequest) -> tuple[int, dict[str, str], bytes]:
        self._require_token(request)
        payload = _json_body(request)
        key = repo_key(f"{payload.get('organization') or DEFAULT_NAMESPACE}/{payload['name']}", payload.get("type"))
        self._repo(key)
        del self._repos[key]
        return _json_response({})

    def _api_whoami(self, request: RecordedRequest) -> tuple[int, dict[str, str], bytes]:
        self._require_token(request)
        return _json_response({"type": "user", "name": DEFAULT_NAMESPACE, "orgs": [], "auth": {"type": "access_token"}})

    def _api_validate_yaml(self, request: RecordedRequest) -> tuple[int, dict[str, str], bytes]:
        return _json_response({"errors": [], "warnings": []})

    def _api_model_info(
        self, request: RecordedRequest, repo: str, rev: str = "main"
    ) -> tuple[int, dict[str, str], bytes]:
        found = self._repo(repo, request)
        commit = found.commits[self._resolve(found, rev)]
        with_blobs = request.query.get("blobs", ["false"])[0].lower() in ("1", "true")
        siblings = []
        for path in sorted(commit.files):
            sibling: dict[str, Any] = {"rfilename": path}
            if with_blobs:
                sibling.update(size=len(commit.files[path]), blobId=git_blob_sha(commit.files[path]))
            siblings.append(sibling)
        name = public_id(repo)
        info = {
            "_id": hashlib.sha1(repo.encode()).hexdigest()[:24],
            "id": name,
            **({} if repo.startswith(DATASET_PREFIX) else {"modelId": name}),
            "author": name.split("/")[0],
            "sha": commit.sha,
            "lastModified": commit.date,
            "createdAt": found.created_at,
            "private": found.private,
            "disabled": False,
            "gated": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
        }
        return _json_response(info)

    def _api_tree(
        self, request: RecordedRequest, repo: str, rev: str, path: str = ""
    ) -> tuple[int, dict[str, str], bytes]:
        found = self._repo(repo, request)
        files = found.commits[self._resolve(found, rev)].files
        recursive = request.query.get("recursive", ["false"])[0].lower() in ("1", "true")
        prefix = path.strip("/") + "/" if path.strip("/") else ""
        if prefix and not any(name.startswith(prefix) for name in files):
            raise _not_found(f"Entry not found: {path}", "EntryNotFound")
        entries: dict[str, dict[str, Any]] = {}
        for name in sorted(files):
            if not name.startswith(prefix):
                continue
            parts = name[len(prefix) :].split("/")
            for depth in range(1, len(parts)):
                folder = prefix + "/".join(parts[:depth])
                entries.setdefault(folder, _folder_entry(folder))
                if not recursive:
                    break
            if recursive or len(parts) == 1:
                entries[name] = _file_entry(name, files[name])
        return _json_response(list(entries.values()))

    def _api_paths_info(self, request: RecordedRequest, repo: str, rev: str) -> tuple[int, dict[str, str], bytes]:
        found = self._repo(repo, request)
        files = found.commits[self._resolve(found, rev)].files
        form = parse_qs(request.body.decode())
        paths = form.get("paths", [])
        if not paths and request.headers.get("content-type", "").startswith("application/json"):
            paths = _json_body(request).get("paths", [])
        answer = []
        for path in paths:
            if path in files:
                answer.append(_file_entry(path, files[path]))
            elif any(name.startswith(path.rstrip("/") + "/") for name in files):
                answer.append(_folder_entry(path.rstrip("/")))
        return _json_response(answer)

    def _api_refs(self, request: RecordedRequest, repo: str) -> tuple[int, dict[str, str], bytes]:
        found = self._repo(repo, request)

        def listing(refs: dict[str, str], kind: str) -> list[dict[str, str]]:
            return [
                {"name": name, "ref": f"refs/{kind}/{name}", "targetCommit": sha} for name, sha in sorted(refs.items())
            ]

        return _json_response(
            {
                "branches": listing(found.branches, "heads"),
                "converts": [],
                "tags": listing(found.tags, "tags"),
                "pullRequests": [],
            }
        )

    def _api_commits(self, request: RecordedRequest, repo: str, rev: str) -> tuple[int, dict[str, str], bytes]:
        found = self._repo(repo, request)
        history = found.history(self._resolve(found, rev))
        return _json_response(
            [
                {
                    "id": c.sha,
                    "title": c.title,
                    "message": c.message,
                    "date": c.date,
                    "authors": [{"user": DEFAULT_NAMESPACE}],
                }
                for c in history
            ]
        )

    def _api_preupload(self, request: RecordedRequest, repo: str, rev: str) -> tuple[int, dict[str, str], bytes]:
        found = self._repo(repo, request)
        files = found.commits[self._resolve(found, rev)].files
        answer = []
        for item in _json_body(request).get("files", []):
            existing = files.get(item["path"])
            answer.append(
                {
                    "path": item["path"],
                    "uploadMode": "regular",
                    "shouldIgnore": False,
                    "oid": git_blob_sha(existing) if existing is not None else None,
                }
            )
        return _json_response({"files": answer, "commitOid": found.resolve(rev)})

    def _api_commit(self, request: RecordedRequest, repo: str, rev: str) -> tuple[int, dict[str, str], bytes]:
        self._require_token(request)
        found = self._repo(repo, request)
        if request.query.get("create_pr"):
            raise HubHTTPError(400, "this fake Hub does not do pull requests")
        branch = rev[len("refs/heads/") :] if rev.startswith("refs/heads/") else rev
        if branch not in found.branches:
            if found.resolve(rev) is not None:
                raise HubHTTPError(400, f"can only commit to a branch, not to {rev!r}")
            raise _not_found(f"Invalid rev id: {rev}", "RevisionNotFound")
        lines = [json.loads(line) for line in request.body.decode().splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubHTTPError(400, "the commit payload must start with a header line")
        header = lines[0]["value"]
        parent = header.get("parentCommit")
        if parent is not None and parent != found.branches[branch]:
            raise HubHTTPError(412, "A commit has happened since. Please refresh and try again.")
        tree = dict(found.commits[found.branches[branch]].files)
        for line in lines[1:]:
            key, value = line.get("key"), line.get("value", {})
            path = _checked_path(value.get("path", ""))
            if key == "file":
                if value.get("encoding") != "base64":
                    raise HubHTTPError(400, f"unsupported encoding {value.get('encoding')!r}")
                tree[path] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                if path not in tree:
                    raise _not_found(f"A file with this name doesn't exist: {path}", "EntryNotFound")
                del tree[path]
            elif key == "deletedFolder":
                for name in [n for n in tree if n.startswith(path.rstrip("/") + "/")]:
                    del tree[name]
            else:
                raise HubHTTPError(
                    400, f"unsupported commit operation {key!r} (this fake Hub takes regular files only)"
                )
        sha = self._add_commit(found, branch, tree, header.get("summary", ""), header.get("description", ""))
        return _json_response(
            {"success": True, "commitOid": sha, "commitUrl": f"{self.url}/{repo}/commit/{sha}", "pullRequestUrl": None}
        )

    def _api_create_tag(self, request: RecordedRequest, repo: str, rev: str) -> tuple[int, dict[str, str], bytes]:
        self._require_token(request)
        found = self._repo(repo, request)
        sha = self._resolve(found, rev)
        tag = _json_body(request).get("tag", "")
        if not tag or tag in found.tags or tag in found.branches:
            raise HubHTTPError(409, f"Tag {tag!r} already exists or is invalid")
        found.tags[tag] = sha
        return _json_response({})

    def _api_delete_tag(self, request: RecordedRequest, repo: str, tag: str) -> tuple[int, dict[str, str], bytes]:
        self._require_token(request)
        found = self._repo(repo, request)
        if found.tags.pop(tag, None) is None:
            raise _not_found(f"Invalid rev id: {tag}", "RevisionNotFound")
        return _json_response({})

    def _api_create_branch(self, request: RecordedRequest, repo: str, branch: str) -> tuple[int, dict[str, str], bytes]:
        self._require_token(request)
        found = self._repo(repo, request)
        if branch in found.branches or branch in found.tags:
            raise HubHTTPError(409, f"Reference {branch!r} already exists")
        found.branches[branch] = self._resolve(found, _json_body(request).get("startingPoint") or "main")
        return _json_response({})

    def _api_delete_branch(self, request: RecordedRequest, repo: str, branch: str) -> tuple[int, dict[str, str], bytes]:
        self._require_token(request)
        found = self._repo(repo, request)
        if found.branches.pop(branch, None) is None:
            raise _not_found(f"Invalid rev id: {branch}", "RevisionNotFound")
        return _json_response({})

    def _resolve_file(
        self, request: RecordedRequest, repo: str, rev: str, path: str
    ) -> tuple[int, dict[str, str], bytes]:
        found = self._repo(repo, request)
        sha = self._resolve(found, rev)
        content = found.commits[sha].files.get(path)
        if content is None:
            error = _not_found(f"Entry not found: {path}", "EntryNotFound")
            status, headers, body = _error_response(error)
            return status, {**headers, "X-Repo-Commit": sha}, body
        headers = {
            "X-Repo-Commit": sha,
            "ETag": f'"{git_blob_sha(content)}"',
            "Content-Type": "application/octet-stream",
            "Accept-Ranges": "bytes",
            "Content-Disposition": f'inline; filename="{path.rsplit("/", 1)[-1]}"',
        }
        byte_range = re.fullmatch(r"bytes=(\d+)-(\d*)", request.headers.get("range", ""))
        if byte_range and request.method == "GET":
            start = int(byte_range.group(1))
            end = int(byte_range.group(2)) if byte_range.group(2) else len(content) - 1
            if start >= len(content):
                return 416, {"Content-Range": f"bytes */{len(content)}"}, b""
            end = min(end, len(content) - 1)
            headers["Content-Range"] = f"bytes {start}-{end}/{len(content)}"
            return 206, headers, content[start : end + 1]
        return 200, headers, content


REPO = r"(?P<repo>[^/]+/[^/]+)"
KIND = r"(?P<kind>models|datasets)"
ROUTES: list[tuple[str, re.Pattern[str], Callable[..., tuple[int, dict[str, str], bytes]]]] = [
    (method, re.compile(pattern), endpoint)
    for method, pattern, endpoint in [
        ("POST", r"/api/repos/create", HubServer._api_create_repo),
        ("DELETE", r"/api/repos/delete", HubServer._api_delete_repo),
        ("GET", r"/api/whoami-v2", HubServer._api_whoami),
        ("POST", r"/api/validate-yaml", HubServer._api_validate_yaml),
        ("GET", rf"/api/{KIND}/{REPO}", HubServer._api_model_info),
        ("GET", rf"/api/{KIND}/{REPO}/revision/(?P<rev>[^/]+)", HubServer._api_model_info),
        ("GET", rf"/api/{KIND}/{REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?", HubServer._api_tree),
        ("POST", rf"/api/{KIND}/{REPO}/paths-info/(?P<rev>[^/]+)", HubServer._api_paths_info),
        ("GET", rf"/api/{KIND}/{REPO}/refs", HubServer._api_refs),
        ("GET", rf"/api/{KIND}/{REPO}/commits/(?P<rev>[^/]+)", HubServer._api_commits),
        ("POST", rf"/api/{KIND}/{REPO}/preupload/(?P<rev>[^/]+)", HubServer._api_preupload),
        ("POST", rf"/api/{KIND}/{REPO}/commit/(?P<rev>[^/]+)", HubServer._api_commit),
        ("POST", rf"/api/{KIND}/{REPO}/tag/(?P<rev>[^/]+)", HubServer._api_create_tag),
        ("DELETE", rf"/api/{KIND}/{REPO}/tag/(?P<tag>[^/]+)", HubServer._api_delete_tag),
        ("POST", rf"/api/{KIND}/{REPO}/branch/(?P<branch>[^/]+)", HubServer._api_create_branch),
        ("DELETE", rf"/api/{KIND}/{REPO}/branch/(?P<branch>[^/]+)", HubServer._api_delete_branch),
        ("GET", rf"/(?:(?P<kind>datasets)/)?{REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", HubServer._resolve_file),
    ]
]


def _checked_path(path: str) -> str:
    parts = path.split("/")
    if not path or path.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise HubHTTPError(400, f"invalid path in repo: {path!r}")
    return path


def _file_entry(path: str, content: bytes) -> dict[str, Any]:
    return {"type": "file", "oid": git_blob_sha(content), "size": len(content), "path": path}


def _folder_entry(path: str) -> dict[str, Any]:
    return {"type": "directory", "oid": hashlib.sha1(f"tree {path}".encode()).hexdigest(), "size": 0, "path": path}


def _json_body(request: RecordedRequest) -> dict[str, Any]:
    try:
        payload = json.loads(request.body or b"{}")
    except json.JSONDecodeError as error:
        raise HubHTTPError(400, f"invalid JSON body: {error}") from error
    if not isinstance(payload, dict):
        raise HubHTTPError(400, "the JSON body must be an object")
    return payload


def _json_response(payload: Any, status: int = 200) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(payload).encode()


def _error_response(error: HubHTTPError) -> tuple[int, dict[str, str], bytes]:
    headers = {"Content-Type": "application/json", "X-Error-Message": error.message}
    if error.code is not None:
        headers["X-Error-Code"] = error.code
    return error.status, headers, json.dumps({"error": error.message}).encode()


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer that can drop its keep-alive connections, so "down" means down."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type, hub: HubServer) -> None:
        self.hub = hub
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: socket.socket, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet: a client hanging up (or ``stop()`` cutting a slow answer) is expected here."""

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def _serve(self) -> None:
        split = urlsplit(self.path)
        request = RecordedRequest(
            method=self.command,
            path=split.path,
            query=parse_qs(split.query),
            headers={key.lower(): value for key, value in self.headers.items()},
            body=self._read_body(),
        )
        status, headers, body = self.server.hub.handle(request)
        request.status = status
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


# -- pytest fixtures (imported by tests/conftest.py) -------------------------------------


@pytest.fixture(scope="session")
def local_hub_server() -> Iterator[HubServer]:
    """The fake Hub on the port that conftest reserved and pointed HF_ENDPOINT at."""
    port = urlsplit(os.environ["HF_ENDPOINT"]).port
    with HubServer(port=port) as hub:
        yield hub


@pytest.fixture
def local_hub(local_hub_server: HubServer) -> Iterator[HubServer]:
    """The session's fake Hub, emptied before the test."""
    local_hub_server.reset()
    yield local_hub_server
    local_hub_server.start()  # in case the test left it down
