"""Peak memory of hostile inputs against a good input of the same kind (issue 11).

Each case runs in a fresh interpreter and reports its peak resident memory (VmHWM, which a
new process image starts afresh; ``ru_maxrss`` would inherit this script's), its wall time
and how it ended. The baseline of each group is the same operation on a good input, in the
same run, so the ratio says what a hostile file costs beyond normal work. Files are built
in a temporary folder; nothing is downloaded. A benchmark, not a test: it prints, it
asserts nothing. Run it on the code before a fix to see the "before" column.

    .venv/bin/python bench/hostile_memory.py [--bomb-gb 1.0] [--json out.json]
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import torch
from PIL import Image
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the hostile files the tests build

from dcgan_hf import Generator  # noqa: E402
from hostile_images import png_header_only  # noqa: E402

RUNNER = """
import sys, time
started = time.perf_counter()
outcome = "ok"
try:
{body}
except Exception as error:  # noqa: BLE001 - the outcome is what is measured
    outcome = type(error).__name__ + ": " + " ".join(str(error).split())[:160]
peak = [line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM")][0]
print(f"{{int(peak) / 1024:.0f}}\\t{{time.perf_counter() - started:.2f}}\\t{{outcome}}")
"""


def measure(body: str) -> tuple[float, float, str]:
    code = RUNNER.format(body="\n".join("    " + line for line in body.strip().splitlines()))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=900)
    if done.returncode != 0:
        return float("nan"), float("nan"), f"exit {done.returncode}: {done.stderr.strip().splitlines()[-1][:90]}"
    peak, seconds, outcome = done.stdout.strip().splitlines()[-1].split("\t", 2)
    return float(peak), float(seconds), outcome


def model_cases(folder: Path) -> list[tuple[str, str]]:
    good = folder / "good"
    Generator(ngf=8).save_pretrained(good)
    state = load_file(str(good / "model.safetensors"))

    def variant(name: str, config: dict | None = None, tensors: dict | None = None) -> str:
        path = folder / name
        path.mkdir()
        text = json.loads((good / "config.json").read_text())
        (path / "config.json").write_text(json.dumps({**text, **(config or {})}))
        save_file(tensors or state, str(path / "model.safetensors"))
        return f"import dcgan_hf\ndcgan_hf.Generator.from_pretrained({str(path)!r})"

    nan = {key: value.clone() for key, value in state.items()}
    nan["main.3.weight"].view(-1)[0] = float("nan")
    return [
        ("good model (baseline)", f"import dcgan_hf\ndcgan_hf.Generator.from_pretrained({str(good)!r})"),
        ("config ngf=1000, weights ngf=8", variant("ngf1000", {"ngf": 1000})),
        ("config ngf=512, weights ngf=8", variant("ngf512", {"ngf": 512})),
        ("config nc=10**6", variant("nc", {"nc": 10**6})),
        ("config nz=10**9", variant("nz", {"nz": 10**9})),
        ("NaN weight", variant("nan", tensors=nan)),
    ]


def checkpoint_cases(folder: Path, bomb_gb: float) -> list[tuple[str, str]]:
    state = Generator(ngf=8).state_dict()
    torch.save(state, folder / "good.pth")
    wide = dict(state)
    wide["main.0.weight"], wide["main.12.weight"] = torch.randn(1, 8000, 4, 4), torch.randn(1000, 3, 4, 4)
    torch.save(wide, folder / "ngf1000.pth")
    zero = dict(state)
    zero["main.0.weight"] = torch.zeros(1).expand(10**6, 8 * 10**6, 4, 4)
    torch.save(zero, folder / "zero_stride.pth")
    write_deflate_bomb(folder / "bomb.pth", int(bomb_gb * 2**30) // 4)

    def convert(name: str) -> str:
        return (f"from dcgan_hf.legacy import read_legacy\nread_legacy({str(folder / name)!r})")

    return [
        ("good checkpoint (baseline)", convert("good.pth")),
        (f"{(folder / 'ngf1000.pth').stat().st_size // 1024} KB implying ngf=1000", convert("ngf1000.pth")),
        (f"{(folder / 'zero_stride.pth').stat().st_size // 1024} KB zero-stride tensor", convert("zero_stride.pth")),
        (f"{(folder / 'bomb.pth').stat().st_size // 1024} KB deflate bomb ({bomb_gb:g} GiB)", convert("bomb.pth")),
    ]


def write_deflate_bomb(path: Path, floats: int) -> None:
    """A zip checkpoint whose one storage entry inflates to ``floats`` float32 zeros."""

    class Storage:
        pass

    class Tensor:
        def __reduce__(self):
            return torch._utils._rebuild_tensor_v2, (Storage(), 0, (floats,), (1,), False, collections.OrderedDict())

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", torch.FloatStorage, "0", "cpu", floats) if isinstance(obj, Storage) else None

    buffer = io.BytesIO()
    Pickler(buffer, protocol=2).dump({"main.0.weight": Tensor()})
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.writestr("archive/data.pkl", buffer.getvalue())
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/version", "3\n")
        with archive.open("archive/data/0", "w", force_zip64=True) as entry:
            chunk = bytes(1 << 24)
            remaining = floats * 4
            while remaining:
                entry.write(chunk[: min(remaining, len(chunk))])
                remaining -= min(remaining, len(chunk))


def image_cases(folder: Path) -> list[tuple[str, str]]:
    Image.new("RGB", (178, 218), (120, 90, 60)).save(folder / "face.jpg")
    Image.new("RGB", (300_000, 1)).save(folder / "strip.png")
    Image.new("RGB", (100_000, 1)).save(folder / "strip100k.png")
    (folder / "bomb.png").write_bytes(png_header_only(20_000, 20_000))

    def decode(name: str) -> str:
        return f"from dcgan_hf.decoding import decode\ndecode(open({str(folder / name)!r}, 'rb').read(), 64)"

    return [
        ("178x218 JPEG (baseline)", decode("face.jpg")),
        (f"{(folder / 'strip.png').stat().st_size} B 300000x1 PNG", decode("strip.png")),
        (f"{(folder / 'strip100k.png').stat().st_size} B 100000x1 PNG", decode("strip100k.png")),
        ("20000x20000 PNG header", decode("bomb.png")),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bomb-gb", type=float, default=1.0, help="inflated size of the deflate bomb (GiB)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="dcgan-hostile-bench-") as name:
        folder = Path(name)
        groups = {"from_pretrained": model_cases, "convert (read_legacy)": lambda f: checkpoint_cases(f, args.bomb_gb),
                  "decoding.decode": image_cases}
        for group, make in groups.items():
            sub = folder / group.split()[0]
            sub.mkdir()
            cases = make(sub)
            baseline = None
            print(f"\n{group}\n  {'case':42s} {'peak MB':>8s} {'× base':>7s} {'s':>6s}  outcome")
            for label, body in cases:
                peak, seconds, outcome = measure(body)
                outcome = outcome.replace(str(sub) + "/", "")
                baseline = peak if baseline is None else baseline
                ratio = peak / baseline if baseline else float("nan")
                print(f"  {label:42s} {peak:8.0f} {ratio:7.2f} {seconds:6.2f}  {outcome}")
                rows.append({"group": group, "case": label, "peak_mb": peak, "ratio": ratio, "seconds": seconds,
                             "outcome": outcome})
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"\n{time.perf_counter() - started:.0f} s in all")
