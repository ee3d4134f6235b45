"""The pull path against a Hub implementation we did not write: olah serving a git mirror.

olah (a self-hosted Hub mirror) serves local non-bare git work trees offline. We commit two
generators into such a repo (tag on the first), start olah on 127.0.0.1, and load both from
a fresh process whose HF_ENDPOINT points at it, by tag, commit sha and branch.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest
import torch

from conftest import ROOT, free_port
from dcgan_hf import Generator

REPO_ID = "olah-org/dcgan-mirror"
SEEDS = [0, 3, 99]
OLAH_CLI = shutil.which("olah-cli") or shutil.which("olah-cli", path=str(Path(sys.executable).parent))


def make_generator(seed: int) -> Generator:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return Generator(nz=8, ngf=4)


def git(work_tree: Path, *args: str) -> str:
    command = ["git", "-c", "user.name=dcgan-tests", "-c", "user.email=tests@example.invalid", *args]
    return subprocess.run(command, cwd=work_tree, check=True, capture_output=True, text=True).stdout.strip()


def commit_generator(work_tree: Path, generator: Generator, message: str) -> str:
    generator.save_pretrained(work_tree)
    git(work_tree, "add", "-A")
    git(work_tree, "commit", "-q", "-m", message)
    return git(work_tree, "rev-parse", "HEAD")


def wait_until_serving(url: str, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"olah exited with code {process.returncode} before serving")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise TimeoutError(f"olah did not answer {url} within {timeout} s")


@pytest.fixture
def olah_mirror(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], dict[str, Generator]]]:
    """olah serving a two-commit mirror repo; yields (url, refs, generators by ref)."""
    if OLAH_CLI is None:
        pytest.skip("olah-cli is not installed (pip install olah)")
    work_tree = tmp_path / "mirrors" / "models" / REPO_ID
    work_tree.mkdir(parents=True)
    git(work_tree, "init", "-q", "-b", "main")
    first, second = make_generator(1), make_generator(2)
    first_commit = commit_generator(work_tree, first, "epoch 1")
    git(work_tree, "tag", "epoch-1")
    second_commit = commit_generator(work_tree, second, "epoch 2")

    port = free_port()
    config = tmp_path / "olah.toml"
    config.write_text(
        textwrap.dedent(
            f"""\
            [basic]
            host = "127.0.0.1"
            port = {port}
            repos-path = "{tmp_path / "olah-cache"}"
            mirrors-path = ["{tmp_path / "mirrors"}"]

            [accessibility]
            offline = true
            """
        )
    )
    log = (tmp_path / "olah.log").open("w")
    process = subprocess.Popen(
        [OLAH_CLI, "-c", str(config), "--log-path", str(tmp_path / "olah-logs")],
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(f"{url}/api/models/{REPO_ID}/revision/main", process)
        refs = {"tag": "epoch-1", "first_commit": first_commit, "branch": "main", "second_commit": second_commit}
        yield url, refs, {"epoch-1": first, first_commit: first, "main": second, second_commit: second}
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


LOADER = """
import json, sys, torch
from dcgan_hf import Generator
repo, revisions, seeds, out = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4]
torch.save({rev: Generator.from_pretrained(repo, revision=rev).sample(seeds) for rev in revisions}, out)
"""


def test_generators_load_from_olah_by_tag_commit_and_branch(olah_mirror, tmp_path: Path) -> None:
    url, refs, generators = olah_mirror
    revisions = [refs["tag"], refs["first_commit"], refs["branch"], refs["second_commit"]]
    out = tmp_path / "samples.pt"
    env = {
        **os.environ,
        "HF_ENDPOINT": url,
        "HF_HOME": str(tmp_path / "fresh_hf_home"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "PYTHONPATH": str(ROOT),
    }
    env.pop("HF_TOKEN", None)
    loaded = subprocess.run(
        [sys.executable, "-c", LOADER, REPO_ID, json.dumps(revisions), json.dumps(SEEDS), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    samples = torch.load(out)
    for revision in revisions:
        assert torch.equal(samples[revision], generators[revision].sample(SEEDS)), revision
    assert not torch.equal(samples[refs["tag"]], samples[refs["branch"]])
