"""The demo's latency on the CPU: app.py through gradio_client against the library called
directly, in the same run.

For a 16-image grid and a 24-frame interpolation, at 1 and 4 concurrent clients, it times
each request from the call to the image file on disk (p50/p95), and the same work done
in-process by the library (sample/interpolate + the same PNG/GIF encoding) from as many
threads, with the intra-op thread count the app's worker uses. App and library rounds
alternate, so both see the same background load. The ratio is the app's overhead: HTTP,
queue, worker hand-offs, file copies and the client's download. Not a test: it prints.

    .venv/bin/python bench/app_latency.py [--model FOLDER] [--rounds 8]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import torch  # noqa: E402
from gradio_client import Client  # noqa: E402

from dcgan_hf import Generator, interpolate, interpolation_gif, sample  # noqa: E402
from dcgan_hf.images import grid_image, png_bytes  # noqa: E402
from dcgan_hf.models import dcgan_init  # noqa: E402
from dcgan_hf.serving import STRIP_COLUMNS, ThreadPolicy  # noqa: E402

CONCURRENCY = (1, 4)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_app(model: str, workdir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    log = (workdir / "app.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "app.py"), "--model", model, "--device", "cpu", "--port", str(port)],
        cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"app.py exited: see {workdir / 'app.log'}")
        try:
            urllib.request.urlopen(url + "gradio_api/info", timeout=2).close()
            return process, url
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise SystemExit("app.py did not start within 180 s")


def workloads(generator: Generator) -> dict[str, tuple[Callable[[Client, int], Any], Callable[[int], Any]]]:
    """name → (app call, library call), both taking a request index (its seeds)."""

    def app_grid(client: Client, index: int) -> Any:
        return client.predict(seed=100 * index, n=16, truncation=1.0, api_name="/generate")

    def library_grid(index: int) -> bytes:
        return png_bytes(grid_image(sample(generator, range(100 * index, 100 * index + 16))))

    def app_walk(client: Client, index: int) -> Any:
        return client.predict(
            seed_a=index, seed_b=index + 1, more_seeds="", frames=24, method="slerp", closed=False,
            truncation=1.0, api_name="/interpolate",
        )

    def library_walk(index: int) -> tuple[bytes, bytes]:
        frames = interpolate(generator, [index, index + 1], 24)
        return png_bytes(grid_image(frames, nrow=STRIP_COLUMNS)), interpolation_gif(frames)

    return {"16-image grid": (app_grid, library_grid), "24-frame interpolation": (app_walk, library_walk)}


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def measure(
    app_call: Callable[[Client, int], Any], library_call: Callable[[int], Any], clients: list[Client], rounds: int
) -> tuple[list[float], list[float]]:
    """Per-request ms: each round sends one request per client at once, then the library runs as many."""
    app_ms: list[float] = []
    library_ms: list[float] = []
    with ThreadPoolExecutor(max_workers=len(clients)) as pool:
        for round_index in range(rounds):
            indices = range(round_index * len(clients), (round_index + 1) * len(clients))
            app_ms += pool.map(lambda pair: timed(partial(app_call, *pair)), zip(clients, indices, strict=True))
            library_ms += pool.map(lambda index: timed(partial(library_call, index)), indices)
    return app_ms, library_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a model folder (default: a random Generator(ngf=64) saved for the run)")
    parser.add_argument("--rounds", type=int, default=8, help="rounds per setting, of `concurrency` requests each")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="dcgan-app-latency-"))
    model = args.model or str(workdir / "model")
    if not args.model:  # default DCGAN size, random weights: the same cost as trained ones
        untrained = Generator()
        dcgan_init(untrained, torch.Generator().manual_seed(0))
        untrained.save_pretrained(model)
    generator = Generator.from_pretrained(model)
    torch.set_num_threads(ThreadPolicy.for_device(torch.device("cpu")).max_threads)  # what the app's worker uses
    process, url = launch_app(model, workdir)
    print(
        f"model {model}: {generator.config}; {os.cpu_count()} CPUs; library threads {torch.get_num_threads()}; "
        f"load avg {os.getloadavg()[0]:.2f}"
    )
    try:
        clients = [
            Client(url, verbose=False, download_files=str(workdir / f"client-{index}"))
            for index in range(max(CONCURRENCY))
        ]
        columns = ("app p50", "app p95", "lib p50", "lib p95", "p50 ratio")
        print(f"{'workload':24s} {'clients':>7s} " + " ".join(f"{column:>9s}" for column in columns))
        for name, (app_call, library_call) in workloads(generator).items():
            app_call(clients[0], 0), library_call(0)  # warm-up
            for concurrency in CONCURRENCY:
                app_ms, library_ms = measure(app_call, library_call, clients[:concurrency], args.rounds)
                (app_p50, app_p95), (lib_p50, lib_p95) = percentiles(app_ms), percentiles(library_ms)
                print(
                    f"{name:24s} {concurrency:7d} {app_p50:7.1f}ms {app_p95:7.1f}ms {lib_p50:7.1f}ms {lib_p95:7.1f}ms "
                    f"{app_p50 / lib_p50:9.2f}"
                )
    finally:
        process.terminate()
        process.wait(timeout=30)
    print(f"load avg at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
