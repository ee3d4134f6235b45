"""The route guard's pieces without a server: the upload ledger (ownership, per-client bounds,
expiry), the multipart rebuild, the settings and who a client is. The guard in front of a
running app is tested in test_app_hardening.py."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from dcgan_hf.route_guard import GuardSettings, RouteGuard, client_address
from dcgan_hf.uploads import UploadLedger, UploadPolicy, UploadRefused, file_parts, rebuild_upload
from hostile_images import encoded, face_like

MB = 2**20


class Clock:
    """Time that moves only when a test says so (the ledger takes its clock as an argument)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def multipart(*parts: tuple[str, bytes], boundary: bytes = b"XyZ") -> bytes:
    out = b""
    for name, data in parts:
        out += (b"--" + boundary + b"\r\nContent-Disposition: form-data; name=\"files\"; filename=\"" + name.encode()
                + b"\"\r\n\r\n" + data + b"\r\n")
    return out + b"--" + boundary + b"--\r\n"


def test_an_upload_is_rebuilt_with_fresh_names_and_only_images_pass() -> None:
    photo = encoded(face_like(40, 40), "PNG")
    body, content_type, names = rebuild_upload(multipart(("me.png", photo), ("me.png", photo)), b"XyZ")
    boundary = content_type.split("boundary=")[1].encode()
    assert file_parts(body, boundary) == [photo, photo]  # the bytes pass unchanged…
    assert len(set(names)) == 2 and all(name.startswith("photo-") and name.endswith(".png") for name in names)
    assert names[0].encode() in body and b"me.png" not in body  # …under names no one else's upload has
    again = rebuild_upload(multipart(("me.png", photo)), b"XyZ")[2]
    assert again[0] not in names  # the same photo uploaded again is another file
    with pytest.raises(UploadRefused, match="only images"):
        rebuild_upload(multipart(("a.png", photo), ("b.txt", b"hello")), b"XyZ")
    with pytest.raises(UploadRefused, match="at most 4 files"):
        rebuild_upload(multipart(*[("a.png", photo)] * 5), b"XyZ")
    with pytest.raises(UploadRefused, match="no file"):
        rebuild_upload(b"--XyZ\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n1\r\n--XyZ--\r\n", b"XyZ")


def stored(folder: Path, name: str, size: int) -> Path:
    path = folder / ("a" * 8) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(size))
    return path


def test_only_recorded_uploads_are_claimed_each_once_and_unclaimed_ones_expire(tmp_path: Path) -> None:
    clock = Clock()
    ledger = UploadLedger(UploadPolicy(ttl_s=60), clock=clock)
    mine, theirs = stored(tmp_path, "photo-1.png", 10), stored(tmp_path, "result.png", 10)
    ledger.record("1.2.3.4", [mine])
    assert ledger.claim(theirs) is None and theirs.is_file()  # a result in the cache is no upload
    assert ledger.claim(mine) == mine and ledger.claim(mine) is None  # claimed once
    late = stored(tmp_path, "photo-2.png", 10)
    ledger.record("1.2.3.4", [late])
    clock.now += 61
    assert ledger.sweep() == [late] and not late.exists() and ledger.claim(late) is None
    assert theirs.is_file() and mine.is_file()  # the claimer deletes its own; nothing else is touched


def test_each_client_is_bounded_in_flight_per_minute_and_unclaimed(tmp_path: Path) -> None:
    clock = Clock()
    policy = UploadPolicy(at_once=3, per_client_at_once=2, bytes_per_minute=10 * MB, pending_bytes=12 * MB,
                          per_client_pending_bytes=8 * MB)
    ledger = UploadLedger(policy, clock=clock)
    with ledger.admit("a", MB), ledger.admit("a", MB):
        with pytest.raises(UploadRefused, match="at most 2 uploads at once from one address") as refused:
            with ledger.admit("a", MB):
                pass
        assert refused.value.status == 429
        with ledger.admit("b", MB):  # another client still gets in…
            with pytest.raises(UploadRefused, match="too many uploads at once") as refused:
                with ledger.admit("c", MB):  # …until every slot is taken
                    pass
            assert refused.value.status == 503
    with ledger.admit("a", 7 * MB):
        pass
    with pytest.raises(UploadRefused, match=r"9 MB uploaded from this address in the last minute; at most 10 MB a "
                                            r"minute: try again in 60 s"):
        with ledger.admit("a", 2 * MB):
            pass
    clock.now += 61
    with ledger.admit("a", 2 * MB) as charge:
        charge.size = MB  # what arrived, not what was declared, counts
    ledger.record("a", [stored(tmp_path, f"photo-{index}.png", 3 * MB) for index in range(2)])
    with pytest.raises(UploadRefused, match="6 MB of photos from this address are uploaded but not used yet"):
        with ledger.admit("a", 3 * MB):
            pass
    ledger.record("b", [stored(tmp_path, "photo-b.png", 5 * MB)])
    with pytest.raises(UploadRefused, match="too many uploaded photos are waiting") as refused:
        with ledger.admit("c", 2 * MB):
            pass
    assert refused.value.status == 503


def test_settings_come_from_the_environment_and_bad_values_say_which() -> None:
    settings = GuardSettings.from_env({"DCGAN_READ_TIMEOUT_S": "1.5", "DCGAN_UPLOAD_MB_PER_MINUTE": "0.5",
                                       "DCGAN_MAX_BODY_KB": "64", "SPACE_ID": "me/space"})
    assert settings.read_timeout_s == 1.5 and settings.uploads.bytes_per_minute == MB // 2
    assert settings.max_body_bytes == 64 * 1024 and settings.trusted_proxies == 1  # a Space has one proxy
    assert GuardSettings.from_env({}) == GuardSettings()
    for value in ("-1", "0", "nan", "lots", "1e30"):
        with pytest.raises(ValueError, match=rf"DCGAN_READ_TIMEOUT_S must be a positive number, got '{value}'"):
            GuardSettings.from_env({"DCGAN_READ_TIMEOUT_S": value})


def test_the_client_is_the_address_the_trusted_proxy_saw() -> None:
    scope = {"client": ("10.0.0.1", 5000), "headers": [(b"x-forwarded-for", b"6.6.6.6, 1.2.3.4")]}
    assert client_address(scope, 0) == "10.0.0.1"  # no proxy trusted: the header is anyone's word
    assert client_address(scope, 1) == "1.2.3.4"  # the entry the proxy appended, not the one the client wrote
    assert client_address({"client": ("10.0.0.1", 5000), "headers": []}, 1) == "10.0.0.1"


async def stand_in_for_gradio(scope: dict, receive, send) -> None:
    """Where the guard hands a request on: reads the body and answers an empty list, as an upload would."""
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b"[]"})


def through_guard(guard, path: str, headers: dict[str, str], chunks: list[bytes], stall: bool = False) -> int:
    """One request through ``guard`` in-process: its status. ``stall``: the body stops after ``chunks``."""
    async def exchange() -> int:
        pending = list(chunks)
        answers = []

        async def receive() -> dict:
            if pending:
                return {"type": "http.request", "body": pending.pop(0), "more_body": stall or bool(pending)}
            await asyncio.sleep(3600)  # the client stopped sending

        async def send(message: dict) -> None:
            answers.append(message)

        scope = {"type": "http", "method": "POST", "path": path, "client": ("10.0.0.1", 1),
                 "headers": [(key.encode(), value.encode()) for key, value in headers.items()]}
        await guard(scope, receive, send)
        return answers[0]["status"]

    return asyncio.run(exchange())


def test_a_stalled_upload_is_cut_and_costs_only_what_it_sent() -> None:
    ledger = UploadLedger(UploadPolicy(bytes_per_minute=10 * MB))
    guard = RouteGuard(stand_in_for_gradio, GuardSettings(read_timeout_s=0.2), ledger=ledger)
    declared = {"content-type": "multipart/form-data; boundary=B", "content-length": str(8 * MB)}
    assert through_guard(guard, "/gradio_api/upload", declared, [b"--B\r\n" + bytes(1024)], stall=True) == 408
    body = multipart(("a.png", encoded(face_like(40, 40), "PNG") + bytes(5 * MB)), boundary=b"B")
    sized = {"content-type": "multipart/form-data; boundary=B", "content-length": str(len(body))}
    assert through_guard(guard, "/gradio_api/upload", sized, [body]) == 200  # 1 kB + 5 MB: within 10 MB a minute
    assert through_guard(guard, "/gradio_api/upload", sized, [body]) == 429  # 10 MB: over it


def test_every_route_reads_at_most_its_bound() -> None:
    guard = RouteGuard(stand_in_for_gradio, GuardSettings(max_body_bytes=1024, read_timeout_s=0.2))
    chunked = {"content-type": "application/json", "transfer-encoding": "chunked"}
    assert through_guard(guard, "/gradio_api/reset", chunked, [b"x" * 600, b"x" * 600]) == 413  # counted as it came
    assert through_guard(guard, "/gradio_api/reset", {"content-length": str(10**12)}, []) == 413  # never read
    assert through_guard(guard, "/gradio_api/cancel", {"content-length": "900"}, [b"x" * 100], stall=True) == 408
    assert through_guard(guard, "/gradio_api/reset", {"content-length": "2"}, [b"{}"]) == 200
