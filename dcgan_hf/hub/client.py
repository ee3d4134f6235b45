"""The calls into the Hugging Face Hub client, in one place, each failure made one clear line.

Single-file downloads (what ``from_pretrained`` reads), repo creation, folder uploads with
a tag, and whether the Hub answers at all: the library's models, its folder downloads and
model loading (``hub``), ``convert`` and the Hub datasets reader all go through here. It
imports nothing of the library but its error type, so every module may use it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

from huggingface_hub import HfApi, constants, get_session, hf_hub_download
from huggingface_hub.errors import (
    HFValidationError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import validate_repo_id

from ..errors import ModelLoadError


def transport_errors() -> tuple[type[BaseException], ...]:
    """What the Hub client raises when it cannot connect at all (httpx2 under huggingface_hub 2.x)."""
    errors: list[type[BaseException]] = [OSError]
    for name in ("httpx2", "httpx"):
        try:
            errors.append(__import__(name).TransportError)
        except (ImportError, AttributeError):
            continue
    return tuple(errors)


def hub_is_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hub endpoint answers at all (any status), through the client's session.

    ``hf_hub_download`` retries a Hub it cannot reach for ~25 s before giving up on a file
    that is not cached; asking once first lets the demo start at once when offline.
    """
    if constants.is_offline_mode():
        return False
    try:
        get_session().head(constants.ENDPOINT, timeout=timeout)
    except Exception:  # noqa: BLE001 - any transport failure (refused, DNS, timeout, TLS) means unreachable
        return False
    return True


def is_hub_repo_id(source: str) -> bool:
    """``user/name`` (or ``name``) as the Hub spells repo ids; a path such as /a/b/c is not one."""
    try:
        validate_repo_id(source)
    except HFValidationError:
        return False
    return True


@contextlib.contextmanager
def hub_errors(where: str, filename: str | None = None) -> Iterator[None]:
    """Turn the Hub client's errors into a ModelLoadError saying what failed (repo, revision, file)."""
    what = filename or "it"
    try:
        yield
    except RevisionNotFoundError as error:
        raise ModelLoadError(f"revision not found: {where}") from error
    except RemoteEntryNotFoundError as error:  # (LocalEntryNotFoundError is an EntryNotFoundError too)
        raise ModelLoadError(f"{where} has no {what}: not a dcgan_hf model repo") from error
    except RepositoryNotFoundError as error:
        raise ModelLoadError(f"model repo not found (or private without a token): {where}") from error
    except LocalEntryNotFoundError as error:
        raise ModelLoadError(f"cannot reach the Hub for {where} and {what} is not in the local cache") from error
    except HfHubHTTPError as error:
        raise ModelLoadError(f"Hub error for {where}{'/' + filename if filename else ''}: {error}") from error
    except ValueError as error:  # HFValidationError: not a valid repo id
        raise ModelLoadError(f"{where!r} is neither a local folder nor a valid Hub repo id ({error})") from error


def download_file(repo_id: str, filename: str, *, revision: str | None = None, **options: Any) -> Path:
    """``hf_hub_download`` (through the HF cache) with errors that say which repo, revision and file failed."""
    where = repo_id + (f"@{revision}" if revision else "")
    with hub_errors(where, filename):
        return Path(hf_hub_download(repo_id=repo_id, filename=filename, revision=revision, **options))


def hub_api(token: str | None = None) -> HfApi:
    """The Hub client every call of this package goes through (token: the saved login when None)."""
    return HfApi(token=token)


def list_refs(repo_id: str, api: HfApi | None = None) -> Any:
    """The repo's branches and tags (``huggingface_hub``'s GitRefs)."""
    return (api or hub_api()).list_repo_refs(repo_id)


def list_files(repo_id: str, api: HfApi | None = None) -> list[str]:
    """Every file path in the repo at its main branch."""
    return (api or hub_api()).list_repo_files(repo_id)


def dataset_commit(repo_id: str, revision: str | None = None) -> str:
    """The commit sha a dataset repo's ``revision`` (default: main) points at now."""
    return hub_api().dataset_info(repo_id, revision=revision).sha


def ensure_repo(repo_id: str, *, private: bool | None = None, token: str | None = None) -> str:
    """Create the model repo if it is missing and return its full id ("name" → "user/name").

    Model cards name the repo they are pushed to, so the id must be known before they are written.
    """
    return hub_api(token).create_repo(repo_id, private=private, exist_ok=True).repo_id


def publish_folder(
    api: HfApi,
    repo_id: str,
    folder: str | os.PathLike,
    *,
    message: str,
    tag: str | None = None,
    delete_patterns: str | Sequence[str] | None = None,
    moved_tags: Sequence[str] = (),
) -> str:
    """Upload ``folder`` to the repo's main branch as one commit, tag that commit; return its sha.

    The tag points at the commit this upload made (not at whatever ``main`` is by then), so
    ``from_pretrained(repo_id, revision=tag)`` gets exactly this folder. An existing tag is
    left as it is (a retried push must not fail on its own earlier tag). Each of
    ``moved_tags`` (e.g. ``best``) is deleted wherever it was and created on this commit.
    """
    patterns = [delete_patterns] if isinstance(delete_patterns, str) else delete_patterns
    commit = api.upload_folder(
        repo_id=repo_id,
        folder_path=folder,
        commit_message=message,
        delete_patterns=list(patterns) if patterns is not None else None,
    )
    if tag is not None:
        api.create_tag(repo_id, tag=tag, revision=commit.oid, exist_ok=True)
    for name in moved_tags:
        move_tag(api, repo_id, name, commit.oid)
    return commit.oid


def move_tag(api: HfApi, repo_id: str, tag: str, revision: str) -> None:
    """Point ``tag`` at ``revision``: delete it where it is (if anywhere), create it again (git tags do not move)."""
    try:
        api.delete_tag(repo_id, tag=tag)
    except RevisionNotFoundError:
        pass  # the first time: nothing to move
    except HfHubHTTPError as error:
        if getattr(error.response, "status_code", None) != 404:
            raise
    api.create_tag(repo_id, tag=tag, revision=revision, exist_ok=True)
