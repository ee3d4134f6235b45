"""Whole commands on hostile inputs (issue 19): ``train.py``, ``convert``, ``export`` and ``app.py``
of a given checkout, each with its peak memory (``/usr/bin/time``), exit code and last line.

Used by ``bench/hostile_memory.py --groups commands`` (``--root`` runs another checkout, for
the "before" column). The full-disk case mounts a tmpfs (root only; skipped otherwise).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import httpx
import torch
from PIL import Image

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests"))

from imagefiles import write_images  # noqa: E402

from dcgan_hf import Generator  # noqa: E402

Row = dict[str, object]
TRAIN_FLAGS = ["--epochs", "1", "--max-steps", "1", "--batch-size", "4", "--ngf", "8", "--ndf", "8", "--threads", "1",
               "--no-progress"]


def tree_peak(pid: int, stop: "threading.Event") -> list[float]:
    """Poll the memory of ``pid`` and its descendants (decode workers) until ``stop``: the sum of their
    proportional set sizes (PSS), so pages a forked worker shares with its parent count once."""
    import psutil

    peak = [0.0]
    while not stop.is_set():
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(pid)
            total = 0
            for process in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    total += process.memory_full_info().pss
            peak[0] = max(peak[0], total / 2**20)
        stop.wait(0.05)
    return peak


def run(root: Path, command: list[str], cwd: Path, label: str, timeout: float = 900,
        limit_as: int | None = None) -> Row:
    """``command`` (``python …`` of ``root``) under /usr/bin/time: peak MB, seconds, exit code, last line."""
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    prefix = ["prlimit", f"--as={limit_as}"] if limit_as else []
    started = time.perf_counter()
    process = subprocess.Popen(["/usr/bin/time", "-f", "@@ %M %x", *prefix, sys.executable, *command], cwd=cwd,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stop = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        summed = pool.submit(tree_peak, process.pid, stop)
        stdout, stderr = process.communicate(timeout=timeout)
        stop.set()
    done = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    seconds = time.perf_counter() - started
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    stats = next(line for line in reversed(lines) if line.startswith("@@ ")).split()
    rest = [line for line in lines if not line.startswith("@@ ") and not line.startswith("Command ")]
    last = " ".join(rest[-1].split())[:150] if rest else ""
    code = int(stats[2]) if stats[2].lstrip("-").isdigit() else stats[2]
    if "Traceback (most recent call last)" in done.stderr:
        last = "traceback: " + last
    return {"case": label, "peak_mb": int(stats[1]) / 1024, "tree_peak_mb": summed.result()[0], "seconds": seconds,
            "outcome": f"exit {code}: {last}"}


@contextlib.contextmanager
def tmpfs(folder: Path, pages: int) -> Iterator[Path | None]:
    folder.mkdir()
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={pages * 4096}", "tmpfs", str(folder)], capture_output=True).returncode == 0
    try:
        yield folder if mounted else None
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(folder)], check=True)


def full_disk_rows(root: Path, folder: Path) -> Iterator[Row]:
    """train.py whose image cache (100 images: 301 pages) fills a disk of exactly that size."""
    write_images(folder / "faces", 100)
    with tmpfs(folder / "disk", 3 * 100 + 1) as disk:
        if disk is None:
            return
        command = [str(root / "train.py"), "--data", str(folder / "faces"), "--data-cache", str(disk),
                   "--output-dir", str(folder / "run"), *TRAIN_FLAGS, "--workers", "1"]
        for attempt in ("first run", "the run after it"):
            row = run(root, command, folder, f"train.py, cache disk fills ({attempt})")
            left = sorted(path.suffix or path.name for path in disk.iterdir())
            yield {**row, "outcome": f"{row['outcome']} [left on the disk: {', '.join(left) or 'nothing'}]"}


def dataset_rows(root: Path, folder: Path) -> Iterator[Row]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    (folder / "zero").mkdir()
    struct = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    pq.write_table(pa.table({"image": pa.array([], type=struct)}), folder / "zero" / "train.parquet")
    (folder / "escape" / "train").mkdir(parents=True)
    Image.new("RGB", (80, 100), (200, 150, 120)).save(folder / "escape" / "train" / "face.png")
    (folder / "escape" / "train" / "metadata.jsonl").write_text(
        json.dumps({"file_name": "face.png"}) + "\n" + json.dumps({"file_name": ".."}) + "\n")
    import datasets

    (folder / "huge").mkdir()
    rows = [{"bytes": b"\x89PNG\r\n\x1a\n" + os.urandom(200 * 2**20), "path": None} for _ in range(2)]
    datasets.Dataset.from_dict({"image": rows}, features=datasets.Features({"image": datasets.Image()})).to_parquet(
        str(folder / "huge" / "train.parquet"))
    del rows
    for name, label in (("zero", "a zero-row parquet"), ("escape", "imagefolder metadata naming .."),
                        ("huge", "2 rows × 200 MB (2 decode workers; peak: all processes)")):
        row = run(root, [str(root / "train.py"), "--data", str(folder / name), "--data-cache", str(folder / "cache"),
                         "--output-dir", str(folder / f"run-{name}"), *TRAIN_FLAGS,
                         "--workers", "2" if name == "huge" else "1"], folder, f"train.py on {label}")
        yield {**row, "peak_mb": row["tree_peak_mb"]} if name == "huge" else row


def convert_rows(root: Path, folder: Path) -> Iterator[Row]:
    torch.save(Generator(ngf=8).state_dict(), folder / "netG.pth")
    (folder / ".out.tmp-mywork").mkdir()
    (folder / ".out.tmp-mywork" / "notes.txt").write_text("mine")
    row = run(root, ["-m", "dcgan_hf", "convert", "netG.pth", "out"], folder, "convert beside .out.tmp-mywork/")
    kept = (folder / ".out.tmp-mywork" / "notes.txt").exists()
    yield {**row, "outcome": f"{row['outcome']} [.out.tmp-mywork/ {'kept' if kept else 'DELETED'}]"}
    (folder / ".out.old-x-99999999999999999999999").mkdir()
    yield run(root, ["-m", "dcgan_hf", "convert", "netG.pth", "out", "--overwrite"], folder,
              "convert --overwrite beside .out.old-x-99…9")


def export_rows(root: Path, folder: Path) -> Iterator[Row]:
    Generator(nz=16, ngf=8).save_pretrained(folder / "tiny")
    for opset in ("1", "99999", "-5"):
        row = run(root, ["-m", "dcgan_hf", "export", "tiny", f"o{opset}.onnx", "--opset", opset], folder,
                  f"export --opset {opset}")
        written = folder / f"o{opset}.onnx"
        if written.exists():
            import onnx

            versions = {entry.domain or "ai.onnx": entry.version for entry in onnx.load(written).opset_import}
            row["outcome"] = f"{row['outcome'][:60]} [wrote opset {versions.get('ai.onnx')}]"
        yield row
    subprocess.run([sys.executable, "-c", "import sys, dcgan_hf; dcgan_hf.Generator(nz=1024, ngf=512)"
                    ".save_pretrained(sys.argv[1])", str(folder / "largest")], check=True,
                   env={**os.environ, "PYTHONPATH": str(BENCH.parent)})
    yield run(root, ["-m", "dcgan_hf", "export", "largest", "largest.onnx"], folder,
              "export nz=1024 ngf=512 under ulimit -v 8 GB", limit_as=8 * 2**30)


def app_start_rows(root: Path, folder: Path) -> Iterator[Row]:
    """app.py serving a run folder whose checkpoints' state.json is hostile, beside two good ones."""
    generator = Generator(nz=16, ngf=8)
    from safetensors.torch import save_file

    states = {"nested 100k deep": "[" * 100_000 + "]" * 100_000,
              "epoch = 10**30": json.dumps({"progress": {"epoch": 10**30, "batch": 0}, "config": {"nz": 16, "ngf": 8}})}
    for index, (label, hostile) in enumerate(states.items()):
        run_folder = folder / f"run{index}"
        generator.save_pretrained(run_folder / "hub")
        for step, text in ((1, json.dumps({"progress": {"epoch": 1, "batch": 0}, "config": {"nz": 16, "ngf": 8}})),
                           (2, json.dumps({"progress": {"epoch": 2, "batch": 0}, "config": {"nz": 16, "ngf": 8}})),
                           (3, hostile)):
            checkpoint = run_folder / "checkpoints" / f"checkpoint-{step:09d}"
            checkpoint.mkdir(parents=True)
            save_file(generator.state_dict(), str(checkpoint / "generator.safetensors"))
            (checkpoint / "state.json").write_text(text)
        yield serve(root, run_folder / "hub", folder, f"app.py, a checkpoint's state.json {label}")


def serve(root: Path, model: Path, folder: Path, label: str) -> Row:
    """Start app.py; serving within 180 s (with which epochs) or how it ended."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(root), "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
           "GRADIO_TEMP_DIR": str(folder / "gradio")}
    log = folder / f"app-{port}.log"
    started = time.perf_counter()
    with log.open("wb") as sink:
        process = subprocess.Popen([sys.executable, str(root / "app.py"), "--model", str(model), "--port", str(port)],
                                   cwd=folder, env=env, stdout=sink, stderr=subprocess.STDOUT)
    outcome = "did not answer within 180 s"
    try:
        while time.perf_counter() - started < 180:
            if process.poll() is not None:
                text = log.read_text(errors="replace")
                lines = [line for line in text.splitlines() if line.strip()]
                outcome = f"exit {process.returncode}: " + ("traceback: " if "Traceback" in text else "") + \
                    " ".join(lines[-1].split())[:120]
                break
            with contextlib.suppress(httpx.HTTPError):
                info = httpx.post(f"http://127.0.0.1:{port}/gradio_api/call/model_info", json={"data": []}, timeout=2)
                if info.status_code == 200:
                    event = info.json()["event_id"]
                    text = httpx.get(f"http://127.0.0.1:{port}/gradio_api/call/model_info/{event}", timeout=30).text
                    epochs = json.loads(text.split("data:", 1)[1])[0]["training_epochs"]
                    outcome = f"serving; training epochs {epochs}"
                    break
            time.sleep(0.5)
        peak = int([line.split()[1] for line in Path(f"/proc/{process.pid}/status").read_text().splitlines()
                    if line.startswith("VmHWM")][0]) / 1024 if process.poll() is None else float("nan")
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=30)
    return {"case": label, "peak_mb": peak, "seconds": time.perf_counter() - started, "outcome": outcome}


def command_rows(root: Path, folder: Path) -> list[Row]:
    rows = []
    for name, make in (("disk", full_disk_rows), ("datasets", dataset_rows), ("convert", convert_rows),
                       ("export", export_rows), ("app", app_start_rows)):
        (folder / name).mkdir()
        rows += list(make(root, folder / name))
    return rows
