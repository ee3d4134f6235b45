"""write_atomic: whole files or nothing, named like any other file."""

from __future__ import annotations

import os
import stat

import pytest

from dcgan_hf.files import write_atomic


def test_writes_bytes_and_text_with_umask_permissions(tmp_path):
    target = write_atomic(tmp_path / "sub" / "a.json", '{"ok": true}')
    assert target.read_text() == '{"ok": true}'
    write_atomic(target, b"\x89PNG")
    assert target.read_bytes() == b"\x89PNG"
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask
    assert [p.name for p in target.parent.iterdir()] == ["a.json"]  # no staging file left


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing(tmp_path):
    target = write_atomic(tmp_path / "a.txt", "old")
    with pytest.raises(TypeError):
        write_atomic(target, 12345)  # not bytes: fails while writing
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]
