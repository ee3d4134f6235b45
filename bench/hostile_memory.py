"""Peak memory of hostile inputs against a good input of the same kind (issues 11 and 19).

Each case runs in a fresh interpreter and reports its peak resident memory (VmHWM, which a
new process image starts afresh; ``ru_maxrss`` would inherit this script's), its wall time
and how it ended. The baseline of each group is the same operation on a good input, in the
same run, so the ratio says what a hostile file costs beyond normal work. Files are built
in a temporary folder; nothing is downloaded. A benchmark, not a test: it prints, it
asserts nothing. ``--root`` runs the cases against another checkout (``git archive`` of the
code before a fix) for the "before" column; ``--groups`` picks groups.

Groups: ``model``, ``checkpoint``, ``image`` (issue 11); ``photo``, ``revisions``, ``datasets``,
``export`` (issue 19, in-process); ``commands`` (whole CLI runs: ``bench/hostile_commands.py``)
and ``app`` (``app.py`` under a hostile visitor: ``bench/hostile_app.py``; needs root).

    .venv/bin/python bench/hostile_memory.py [--root DIR] [--groups photo,app] [--bomb-gb 1.0] [--json out.json]
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
from typing import Callable

import torch
from PIL import Image
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the hostile files the tests build
sys.path.insert(0, str(ROOT / "bench"))

from dcgan_hf import Generator  # noqa: E402
from hostile_images import png_header_only  # noqa: E402

RUNNER = """
import sys, time
started = time.perf_counter()
outcome = "ok"  # a case may set its own
try:
{body}
except Exception as error:  # noqa: BLE001 - the outcome is what is measured
    outcome = type(error).__name__ + ": " + " ".join(str(error).split())[:160]
peak = [line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM")][0]
print(f"{{int(peak) / 1024:.0f}}\\t{{time.perf_counter() - started:.2f}}\\t{{outcome}}")
"""
CODE = ROOT  # the checkout the cases run against (--root)


def measure(body: str) -> tuple[float, float, str]:
    code = RUNNER.format(body="\n".join("    " + line for line in body.strip().splitlines()))
    env = {**os.environ, "PYTHONPATH": str(CODE), "OMP_NUM_THREADS": "1"}
    # cwd: "python -c" puts the working directory first on sys.path, before PYTHONPATH
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=900, cwd=CODE)
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


# -- issue 19 ------------------------------------------------------------------------------------


def photo_cases(folder: Path) -> list[tuple[str, str]]:
    """Uploads within the limits (10 MB, 40 MP) whose decode could cost far more than the file."""
    from hostile_images import encoded, face_like

    files = {
        "face.jpg": encoded(face_like(300, 400), "JPEG"),
        "rgba6300.png": encoded(Image.new("RGBA", (6300, 6300), (200, 150, 120, 255)), "PNG"),
        "rgba3200.png": encoded(face_like(3200, 3200).convert("RGBA"), "PNG"),
        "rgb4400.png": encoded(face_like(4400, 4400), "PNG"),
        "rgb2200.webp": encoded(face_like(2200, 2200), "WEBP"),
        "rgb4000.webp": encoded(face_like(4000, 4000), "WEBP"),
        "jpeg7000.jpg": encoded(face_like(7000, 5000), "JPEG", quality=90),
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)

    def load(name: str) -> str:
        return f"from dcgan_hf.photos import photo_from_file\nphoto_from_file({str(folder / name)!r})"

    size = lambda name: f"{len(files[name]) // 1024} KB"  # noqa: E731
    return [
        ("300×400 JPEG (baseline)", load("face.jpg")),
        (f"{size('rgba6300.png')} 6300×6300 RGBA PNG", load("rgba6300.png")),
        (f"{size('rgba3200.png')} 3200×3200 RGBA PNG", load("rgba3200.png")),
        (f"{size('rgb4400.png')} 4400×4400 RGB PNG", load("rgb4400.png")),
        (f"{size('rgb2200.webp')} 2200×2200 WebP", load("rgb2200.webp")),
        (f"{size('rgb4000.webp')} 4000×4000 WebP", load("rgb4000.webp")),
        (f"{size('jpeg7000.jpg')} 7000×5000 JPEG", load("jpeg7000.jpg")),
    ]


def revision_cases(folder: Path) -> list[tuple[str, str]]:
    """A local run folder for the Training tab: state.json and its claimed config are outside input."""
    generator = Generator(nz=16, ngf=8)
    weights = generator.state_dict()

    def run(name: str, state: str | bytes) -> Path:
        checkpoint = folder / name / "checkpoints" / "checkpoint-000000002"
        checkpoint.mkdir(parents=True)
        save_file(weights, str(checkpoint / "generator.safetensors"))
        (checkpoint / "state.json").write_bytes(state if isinstance(state, bytes) else state.encode())
        return checkpoint

    good = json.dumps({"progress": {"epoch": 2, "batch": 0}, "config": {"nz": 16, "ngf": 8}, "has_ema": False})
    runs = {
        "good": run("good", good),
        "deep": run("deep", "[" * 100_000 + "]" * 100_000),
        "huge": run("huge", '{"progress": {"epoch": 2, "batch": 0, "history": [' + "{}," * 20_000_000 + "{}]}}"),
        "claims": run("claims", good.replace('"nz": 16, "ngf": 8', '"nz": 1024, "ngf": 512')),
    }

    def revisions(name: str) -> str:
        return ("from dcgan_hf.revisions import checkpoint_revisions\n"
                f"outcome = 'epochs %s' % [r.epoch for r in checkpoint_revisions({str(runs[name].parents[1])!r})]")

    def generator_of(name: str) -> str:
        return f"from dcgan_hf.revisions import load_checkpoint_generator\nload_checkpoint_generator({str(runs[name])!r})"

    return [
        ("good run: list + load (baseline)", revisions("good") + "\n" + generator_of("good")),
        ("state.json nested 100k deep", revisions("deep")),
        (f"{(runs['huge'] / 'state.json').stat().st_size // 2**20} MB state.json", revisions("huge")),
        ("state claims nz=1024 ngf=512, weights ngf=8", generator_of("claims")),
    ]


def dataset_cases(folder: Path) -> list[tuple[str, str]]:
    """parquet datasets with rows of hundreds of MB (random bytes after a PNG signature)."""
    import datasets

    features = datasets.Features({"image": datasets.Image()})
    from hostile_images import encoded, face_like

    def parquet(name: str, rows: list[bytes]) -> str:
        (folder / name).mkdir()
        table = datasets.Dataset.from_dict({"image": [{"bytes": row, "path": None} for row in rows]}, features=features)
        table.to_parquet(str(folder / name / "train.parquet"))
        return (f"from dcgan_hf.hf_datasets import load_cache\n"
                f"cache = load_cache({str(folder / name)!r}, cache_dir={str(folder / ('cache-' + name))!r}, "
                f"workers=1, progress=False)\noutcome = '%d images, %d skipped' % (len(cache), len(cache.skipped))")

    signature = b"\x89PNG\r\n\x1a\n"
    faces = [encoded(face_like(80, 100, seed=index), "PNG") for index in range(16)]
    return [
        ("16 small PNG rows (baseline)", parquet("good", faces)),
        ("2 rows × 200 MB", parquet("two200", [signature + os.urandom(200 * 2**20) for _ in range(2)] + faces[:1])),
        ("1 row of 300 MB (over the 256 MB bound)", parquet("one300", [signature + os.urandom(300 * 2**20)] + faces[:1])),
    ]


def export_cases(folder: Path) -> list[tuple[str, str]]:
    """Export peaks at two widths: the multiple of the weights an export holds (export.EXPORT_MEMORY)."""
    cases = []
    for ngf in (128, 256):
        Generator(nz=1024, ngf=ngf).save_pretrained(folder / f"ngf{ngf}")
        cases.append((f"nz=1024 ngf={ngf}", (
            "import dcgan_hf, onnx, onnxscript, onnxruntime\n"
            "from dcgan_hf.export import export_onnx\n"
            f"g = dcgan_hf.Generator.from_pretrained({str(folder / f'ngf{ngf}')!r})\n"
            "weights = sum(t.numel() * t.element_size() for t in [*g.parameters(), *g.buffers()]) / 2**20\n"
            "rss = lambda field: int([l.split()[1] for l in open('/proc/self/status') if l.startswith(field)][0]) / 1024\n"
            "before, space = rss('VmRSS'), rss('VmSize')\n"
            "open('/proc/self/clear_refs', 'w').write('5')\n"
            f"export_onnx(g, {str(folder / f'ngf{ngf}.onnx')!r})\n"
            "outcome = 'weights %.0f MB; peak resident +%.1f×, address space +%.1f× the weights' % ("
            "weights, (rss('VmHWM') - before) / weights, (rss('VmPeak') - space) / weights)")))
    return cases


def in_process_groups(bomb_gb: float) -> dict[str, tuple[str, Callable[[Path], list[tuple[str, str]]]]]:
    return {
        "model": ("from_pretrained", model_cases),
        "checkpoint": ("convert (read_legacy)", lambda folder: checkpoint_cases(folder, bomb_gb)),
        "image": ("decoding.decode", image_cases),
        "photo": ("photos.photo_from_file (an upload)", photo_cases),
        "revisions": ("Training tab: a local run folder", revision_cases),
        "datasets": ("hf_datasets.load_cache (workers=1)", dataset_cases),
        "export": ("export_onnx", export_cases),
    }


def run_in_process(group: str, make: Callable[[Path], list[tuple[str, str]]], folder: Path) -> list[dict]:
    rows, baseline = [], None
    print(f"\n{group}\n  {'case':42s} {'peak MB':>8s} {'× base':>7s} {'s':>6s}  outcome", flush=True)
    for label, body in make(folder):
        peak, seconds, outcome = measure(body)
        outcome = outcome.replace(str(folder) + "/", "")
        baseline = peak if baseline is None else baseline
        ratio = peak / baseline if baseline else float("nan")
        print(f"  {label:42s} {peak:8.0f} {ratio:7.2f} {seconds:6.2f}  {outcome}", flush=True)
        rows.append({"group": group, "case": label, "peak_mb": peak, "ratio": ratio, "seconds": seconds,
                     "outcome": outcome})
    return rows


def print_rows(group: str, rows: list[dict]) -> None:
    print(f"\n{group}\n  {'case':42s} {'peak MB':>8s} {'s':>6s}  outcome")
    for row in rows:
        print(f"  {row['case']:42s} {row['peak_mb']:8.0f} {row['seconds']:6.1f}  {row['outcome']}", flush=True)


def main() -> None:
    global CODE
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bomb-gb", type=float, default=1.0, help="inflated size of the deflate bomb (GiB)")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout to run the cases against")
    parser.add_argument("--groups", default="", help="comma-separated groups (default: all)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    CODE = args.root.resolve()
    import hostile_app
    import hostile_commands

    groups = in_process_groups(args.bomb_gb)
    chosen = [name for name in args.groups.split(",") if name] or [*groups, "commands", "app"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="dcgan-hostile-bench-") as name:
        folder = Path(name)
        os.environ["HF_DATASETS_CACHE"] = str(folder / "hf-datasets")  # datasets' Arrow copies go with the rest
        for key in chosen:
            sub = folder / key
            sub.mkdir()
            if key in groups:
                label, make = groups[key]
                rows += run_in_process(label, make, sub)
            elif key == "commands":
                found = [{"group": "commands", **row} for row in hostile_commands.command_rows(CODE, sub)]
                print_rows("whole commands (peak of the command's process)", found)
                rows += found
            elif key == "app":
                model = sub / "model"
                Generator(ngf=16).save_pretrained(model)
                found = [{"group": "app", **row} for row in hostile_app.app_rows(CODE, model)]
                print_rows("app.py (peak and resident size after, above the server's size before each case)",
                           [{**row, "outcome": f"{row['outcome']} (resident after +{row['after_mb']:.0f} MB)"}
                            for row in found])
                rows += found
            else:
                raise SystemExit(f"unknown group {key!r}; groups: {', '.join([*groups, 'commands', 'app'])}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"\n{time.perf_counter() - started:.0f} s in all")
