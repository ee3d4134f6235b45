"""Test-wide environment, set before anything imports huggingface_hub or gradio.

Every test runs offline: the Hub client is pointed at a server on 127.0.0.1 (the port is
reserved here, the server is started by the ``local_hub`` fixture), its cache lives in a
temporary HF_HOME, and no token from the developer's machine leaks in.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
from pathlib import Path

import pytest


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


ROOT = Path(__file__).resolve().parent.parent
TEST_HOME = Path(tempfile.mkdtemp(prefix="dcgan-hf-tests-"))
HUB_PORT = free_port()

for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "DCGAN_MODEL"):
    os.environ.pop(name, None)
os.environ.update(
    OMP_NUM_THREADS="1",  # tests run beside servers and browsers on 2 cores: spinning OpenMP threads collide
    HF_ENDPOINT=f"http://127.0.0.1:{HUB_PORT}",
    HF_HOME=str(TEST_HOME / "hf_home"),
    HF_HUB_DISABLE_TELEMETRY="1",
    GRADIO_ANALYTICS_ENABLED="False",
    GRADIO_TEMP_DIR=str(TEST_HOME / "gradio"),
    NO_PROXY="127.0.0.1,localhost",
    no_proxy="127.0.0.1,localhost",
)
sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


from hub_server import local_hub, local_hub_server  # noqa: E402,F401  (the fake Hub's fixtures)


@pytest.hookimpl(optionalhook=True)  # the hook exists only with pytest-xdist
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto`` (the README's command): one worker more than the cores this process may use.

    Every app, CLI and training test waits while a subprocess starts (imports: 2–7 s of one
    core), so a worker per core leaves cores idle; a third worker on 2 cores fills those gaps
    (the whole suite, idle 2-core machine: 5:41 with 2 workers → 5:14 with 3; bench/RESULTS.md §17).
    """
    return len(os.sched_getaffinity(0)) + 1
