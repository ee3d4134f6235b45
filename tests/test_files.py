"""write_atomic: whole files or nothing, named like any other file; replace_folder: whole folders."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from dcgan_hf import files
from dcgan_hf.files import replace_folder, write_atomic


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


def test_replace_folder_swaps_in_a_whole_new_folder(tmp_path):
    target = tmp_path / "out"
    with replace_folder(target) as staging:
        assert staging.parent == tmp_path and staging.name.startswith(".out.tmp-") and not target.exists()
        (staging / "a.txt").write_text("first")
    assert [p.name for p in target.iterdir()] == ["a.txt"]
    with replace_folder(target, durable=True) as staging:
        (staging / "b.txt").write_text("second")
    assert [p.name for p in target.iterdir()] == ["b.txt"]  # the old folder is gone whole
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no copy left beside it


def test_replace_folder_keeps_the_old_folder_when_the_build_or_the_swap_fails(tmp_path, monkeypatch):
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_text("old")
    with pytest.raises(OSError, match="No space left"):
        with replace_folder(target) as staging:
            (staging / "half.txt").write_text("x")
            raise OSError(28, "No space left on device")
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and (target / "keep.txt").read_text() == "old"

    real_replace = os.replace

    def failing_swap(source, destination):  # the old folder moves aside, then the new one cannot move in
        if ".tmp-" in os.fspath(source):
            raise OSError(5, "Input/output error")
        real_replace(source, destination)

    monkeypatch.setattr(files.os, "replace", failing_swap)
    with pytest.raises(OSError, match="Input/output error"):
        with replace_folder(target) as staging:
            (staging / "new.txt").write_text("new")
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and (target / "keep.txt").read_text() == "old"


def test_replace_folder_removes_copies_dead_processes_left_and_works_for_dot(tmp_path, monkeypatch):
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)
    (tmp_path / f".out.tmp-1234abcd-{dead}").mkdir()  # a build killed half-way
    (tmp_path / f".out.old-{dead}").mkdir()  # (an older naming: the pid alone)
    live = tmp_path / f".out.tmp-{os.getpid()}"  # one this (live) process may still be writing
    live.mkdir()
    (tmp_path / "out").mkdir()
    monkeypatch.chdir(tmp_path / "out")
    with replace_folder(".") as staging:  # "." has no name of its own: built beside the absolute path
        (staging / "a.txt").write_text("a")
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "out"]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["a.txt"]


def test_only_temporaries_named_the_way_replace_folder_names_them_are_removed(tmp_path):
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)
    theirs = [".out.tmp-mywork", ".out.old-x-99999999999999999999999", f".out.tmp-{'9' * 30}",
              f".out.tmp-1234abcd-{dead}-notes", ".out.old-", f".out.tmp-{dead}.bak"]
    for name in theirs:  # look like ours to a glob, but none is a name replace_folder makes
        (tmp_path / name).mkdir()
        (tmp_path / name / "precious.txt").write_text("mine")
    ours = [f".out.tmp-1234abcd-{dead}", f".out.old-{dead}"]
    for name in ours:
        (tmp_path / name).mkdir()
    with replace_folder(tmp_path / "out") as staging:
        (staging / "a.txt").write_text("a")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(theirs + ["out"])
    assert all((tmp_path / name / "precious.txt").read_text() == "mine" for name in theirs)
