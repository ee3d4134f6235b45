"""Hostile inputs (issue 11): each file, flag or signal that once crashed a run, allocated
gigabytes or deleted data, built here in miniature. Every case must end in one clear error
(or a skipped, reported file) while the good inputs beside it keep working."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from dcgan_hf import Generator, ModelLoadError
from dcgan_hf.models import SIZE_LIMITS

from hostile_images import png_header_only as header_only_png
from imagefiles import write_images

ROOT = Path(__file__).resolve().parent.parent
PYTHON_ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    Generator(ngf=8).save_pretrained(folder)
    return folder


def variant(model_dir: Path, folder: Path, *, config: str | bytes | None = None,
            state: dict[str, torch.Tensor] | None = None) -> Path:
    """A copy of the good model folder with its config.json text or its tensors replaced."""
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        (folder / name).write_bytes((model_dir / name).read_bytes())
    if config is not None:
        (folder / "config.json").write_bytes(config if isinstance(config, bytes) else config.encode())
    if state is not None:
        save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


def config_text(**overrides) -> str:
    return json.dumps({"model_type": "dcgan-generator", "nz": 100, "ngf": 8, "nc": 3, **overrides})


def within_address_space(code: str, headroom_mb: int, prelude: str = "import dcgan_hf") -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter whose address space may grow only ``headroom_mb`` past what
    ``prelude`` (its imports) left it: anything that allocates more fails there, whatever allocates it.

    A memory bound as a pass/fail property, without timing or comparing peaks (the figures are
    bench/hostile_memory.py's).
    """
    script = (f"import resource, sys\n{prelude}\n"
              "size = int([line.split()[1] for line in open('/proc/self/status') if line.startswith('VmSize')][0])\n"
              f"resource.setrlimit(resource.RLIMIT_AS, ((size + {headroom_mb} * 1024) * 1024, resource.RLIM_INFINITY))\n"
              f"{code}\n")
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=PYTHON_ENV,
                          timeout=300)


# -- 1. model loading: bounded, and always a ModelLoadError -------------------------------------

@pytest.mark.parametrize("text, message", [
    (config_text(ngf=1000), r"ngf must be a positive integer \(at most 512\), got 1000"),
    (config_text(nc=10**6), r"nc must be a positive integer \(at most 4\), got 1000000"),
    (config_text(ngf=10**6), "ngf must be a positive integer"),
    (config_text(nz=10**9), "nz must be a positive integer"),
    (config_text(ngf=True), "ngf must be a positive integer .* got True"),
    (config_text(ngf=8.0), "ngf must be a positive integer .* got 8.0"),
    ('{"model_type": "dcgan-generator", "nz": 100, "ngf": 8, "ngf": 9, "nc": 3}', r"duplicate keys \['ngf'\]"),
    ('{"model_type": "dcgan-generator", "nz": 100, "ngf": 1e400, "nc": 3}', "number 1e400 is out of range"),
    ('{"model_type": "dcgan-generator", "nz": NaN, "ngf": 8, "nc": 3}', "NaN is not a number JSON allows"),
    ('{"nz": ' + "9" * 5000 + "}", "unreadable config.json"),
    ("[" * 10_000 + "]" * 10_000, "nested 10000 levels deep"),
    ('{"model_type": "' + "x" * 70_000 + '"}', "larger than 65,536 bytes"),
    (b'{"nz": "\xff"}', "unreadable config.json .*utf-8"),
], ids=["ngf=1000", "nc=1e6", "ngf=1e6", "nz=1e9", "bool", "float", "duplicate-key", "1e400", "NaN",
        "5000-digits", "10k-deep", "70KB", "not-utf8"])
def test_hostile_configs_are_refused_before_any_model_is_built(model_dir, tmp_path, text, message):
    folder = variant(model_dir, tmp_path / "m", config=text)
    with pytest.raises(ModelLoadError, match=message):
        Generator.from_pretrained(folder)


def test_a_config_that_disagrees_with_the_weights_is_refused_from_the_header(model_dir, tmp_path):
    # ngf=512 is within the bounds, but the safetensors header says ngf=8: nothing is built
    folder = variant(model_dir, tmp_path / "m", config=config_text(ngf=SIZE_LIMITS["ngf"]))
    with pytest.raises(ModelLoadError, match=r"mis-shaped tensors .*main.0.weight: expected \(100, 4096, 4, 4\), "
                                             r"got \(100, 64, 4, 4\)"):
        Generator.from_pretrained(folder)
    # a Generator(ngf=512) is ~700 MB of float32: with 100 MB to spare, only a refusal from the header passes
    done = within_address_space(f"try:\n    dcgan_hf.Generator.from_pretrained({str(folder)!r})\n"
                                f"except dcgan_hf.ModelLoadError as error:\n    print('refused:', error)", 100)
    assert done.returncode == 0 and "refused:" in done.stdout and "mis-shaped" in done.stdout, done.stderr[-2000:]


def broken(state: dict[str, torch.Tensor], key: str, value: float) -> dict[str, torch.Tensor]:
    state = {name: tensor.clone() for name, tensor in state.items()}
    state[key].view(-1)[0] = value
    return state


@pytest.mark.parametrize("change, message", [
    (lambda s: broken(s, "main.3.weight", float("nan")), r"NaN or infinite values in \['main.3.weight'\]"),
    (lambda s: broken(s, "main.12.weight", float("inf")), r"NaN or infinite values in \['main.12.weight'\]"),
    (lambda s: broken(s, "main.1.running_var", -1.0), r"negative BatchNorm variances in \['main.1.running_var'\]"),
    (lambda s: {k: v.to(torch.int32) if v.is_floating_point() else v for k, v in s.items()},
     r"wrong dtype .*main.0.weight: int32, expected a float dtype"),
    (lambda s: {k: v > 0 if v.is_floating_point() else v for k, v in s.items()},
     r"wrong dtype .*main.0.weight: bool, expected a float dtype"),
    (lambda s: {**s, "main.1.num_batches_tracked": torch.tensor(0.5)},
     r"main.1.num_batches_tracked: float32, expected an integer dtype"),
], ids=["nan", "inf", "negative-variance", "int32", "bool", "float-counter"])
def test_broken_weights_are_refused_with_a_message(model_dir, tmp_path, change, message):
    state = change(load_file(str(model_dir / "model.safetensors")))
    folder = variant(model_dir, tmp_path / "m", state=state)
    with pytest.raises(ModelLoadError, match=message):
        Generator.from_pretrained(folder)


def test_a_safetensors_header_is_bounded_before_it_is_parsed(model_dir, tmp_path):
    folder = variant(model_dir, tmp_path / "m")
    (folder / "model.safetensors").write_bytes((10**9).to_bytes(8, "little") + b"{" * 64)
    with pytest.raises(ModelLoadError, match="header claims 1,000,000,000 bytes"):
        Generator.from_pretrained(folder)


def test_every_load_failure_is_a_model_load_error(model_dir):
    with pytest.raises(ModelLoadError, match="cannot load"):
        Generator.from_pretrained(model_dir, map_location="bogus")


def test_the_demo_falls_back_and_the_cli_prints_one_line(model_dir, tmp_path):
    from dcgan_hf.serving import load_with_fallback

    folder = variant(model_dir, tmp_path / "m", config=config_text(ngf=10**6))
    loaded = load_with_fallback(str(folder), str(model_dir))
    assert loaded.spec.source == str(model_dir)
    assert "ngf must be a positive integer" in loaded.fallback_reason
    done = subprocess.run([sys.executable, "-m", "dcgan_hf", "generate", "--model", str(folder), "--out",
                           str(tmp_path / "x.png")], capture_output=True, text=True, env=PYTHON_ENV)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "ngf must be a positive integer" in done.stderr


@pytest.mark.parametrize("flags, message", [
    (["--lr-g", "nan"], "--lr-g must be a finite number"),
    (["--lr-d", "-1"], "--lr-d must be > 0"),
    (["--beta1", "nan"], "--beta1 must be a finite number"),
    (["--beta2", "1"], r"--beta2 must be in \[0, 1\)"),
    (["--hub-retry-delay", "nan"], "--hub-retry-delay must be a finite number"),
    (["--hub-retry-delay", "1e9"], r"--hub-retry-delay must be in \[0, 3600\]"),
    (["--ema-decay", "inf"], "--ema-decay must be a finite number"),
    (["--ngf", "100000"], r"--ngf must be in \[1, 512\]"),
])
def test_bad_training_flags_are_one_line(flags, message, capsys):
    from dcgan_hf.training import TrainConfig

    with pytest.raises(SystemExit) as exited:
        TrainConfig.from_args(["--dry-run", *flags])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "error: invalid training config" in error and re.search(message, error), error


# -- 2. convert: bounded by the file's metadata, and --overwrite never destroys data --------------

def test_a_zero_stride_tensor_is_refused_before_it_is_materialised(tmp_path):
    from dcgan_hf.legacy import read_legacy

    state = Generator(ngf=8).state_dict()
    state["main.0.weight"] = torch.zeros(1).expand(10**6, 8 * 10**6, 4, 4)  # 4 bytes claiming 512 TB
    torch.save(state, tmp_path / "netG.pth")
    assert (tmp_path / "netG.pth").stat().st_size < 1_000_000
    with pytest.raises(ModelLoadError, match=r"refused: a tensor of shape \(1000000, 8000000, 4, 4\) and strides "
                                             r"\(0, 0, 0, 0\) repeats 4 stored bytes"):
        read_legacy(tmp_path / "netG.pth")


def test_sizes_implied_by_shapes_are_bounded_and_checked_before_building(tmp_path):
    from dcgan_hf.legacy import read_legacy

    state = Generator(ngf=8).state_dict()
    state["main.0.weight"], state["main.12.weight"] = torch.randn(1, 8000, 4, 4), torch.randn(1000, 3, 4, 4)
    torch.save(state, tmp_path / "ngf1000.pth")  # ~700 KB implying a 3 GB generator
    with pytest.raises(ModelLoadError, match=r"the generator's tensor shapes imply ngf must be a positive integer"):
        read_legacy(tmp_path / "ngf1000.pth")
    state["main.0.weight"], state["main.12.weight"] = torch.randn(1, 4000, 4, 4), torch.randn(500, 3, 4, 4)
    torch.save(state, tmp_path / "ngf500.pth")  # within the bounds, but the other tensors are ngf=8
    with pytest.raises(ModelLoadError, match=r"mis-shaped tensors \['main.1.bias: expected \(4000,\), got \(64,\)"):
        read_legacy(tmp_path / "ngf500.pth")
    # building Generator(nz=1, ngf=500) first cost ~500 MB: with 100 MB to spare, only a refusal passes
    done = within_address_space(f"try:\n    read_legacy({str(tmp_path / 'ngf500.pth')!r})\n"
                                "except dcgan_hf.ModelLoadError as error:\n    print('refused:', error)", 100,
                                prelude="import dcgan_hf\nfrom dcgan_hf.legacy import read_legacy")
    assert done.returncode == 0 and "mis-shaped" in done.stdout, done.stderr[-2000:]


def test_a_deflated_checkpoint_entry_is_refused_without_inflating_it(tmp_path):
    from dcgan_hf.legacy import read_legacy

    torch.save({"main.0.weight": torch.zeros(256, 1024)}, tmp_path / "plain.pth")
    with zipfile.ZipFile(tmp_path / "plain.pth") as plain, \
            zipfile.ZipFile(tmp_path / "bomb.pth", "w", compression=zipfile.ZIP_DEFLATED) as bomb:
        for entry in plain.infolist():
            bomb.writestr(entry.filename, plain.read(entry))
    assert (tmp_path / "bomb.pth").stat().st_size < 10_000  # 1 MB of zeros, deflated
    with pytest.raises(ModelLoadError, match=r"refused: the entry .* is compressed .*torch.save never compresses"):
        read_legacy(tmp_path / "bomb.pth")


def test_overwrite_refuses_a_folder_that_convert_did_not_make(tmp_path):
    from dcgan_hf.convert import convert

    torch.save(Generator(ngf=8).state_dict(), tmp_path / "netG.pth")
    project = tmp_path / "project"
    (project / ".git").mkdir(parents=True)
    (project / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (project / "config.json").write_text("{}")  # a name convert writes does not make the folder convert's
    with pytest.raises(FileExistsError, match=r"holds files convert did not write \(\.git/\)"):
        convert(tmp_path / "netG.pth", project, overwrite=True)
    assert (project / ".git" / "HEAD").is_file() and (project / "config.json").read_text() == "{}"
    done = subprocess.run([sys.executable, "-m", "dcgan_hf", "convert", str(tmp_path / "netG.pth"), ".", "--overwrite"],
                          cwd=project, capture_output=True, text=True, env=PYTHON_ENV)
    assert done.returncode == 2 and done.stderr.startswith("error: . holds files convert did not write")
    assert "Traceback" not in done.stderr and (project / ".git" / "HEAD").is_file()


# -- 3. training never dies on one bad image ----------------------------------------------------

def png_header_only(path: Path, width: int, height: int) -> Path:
    path.write_bytes(header_only_png(width, height))
    return path


def dead_pid() -> int:
    """The id of a process that has just ended."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def test_bad_images_are_skipped_counted_and_reported_not_fatal(tmp_path, caplog):
    from dcgan_hf.data import load_cache
    from dcgan_hf.decoding import decode

    folder = tmp_path / "faces"
    good = write_images(folder, 6)
    odd_name = folder / os.fsdecode(b"x\xff.jpg")  # not UTF-8: once a UnicodeEncodeError in the fingerprint
    odd_name.write_bytes(good[1].read_bytes())
    png_header_only(folder / "bomb.png", 20_000, 20_000)  # PIL's own decompression-bomb error
    png_header_only(folder / "large.png", 10_000, 5_000)  # below PIL's limit, above ours
    Image.new("RGB", (300_000, 1)).save(folder / "strip.png")  # ~1 KB; resized to 64 high: 3.7 GB
    with caplog.at_level("WARNING"):
        cache = load_cache(folder, cache_dir=tmp_path / "cache", workers=2, progress=False)
    assert len(cache) == 7  # the six, and the odd name (a copy of one of them)
    copy = decode(good[1].read_bytes(), 64)
    assert sum(np.array_equal(row, copy) for row in cache.images) == 2
    reasons = dict(entry.split(" (", 1) for entry in cache.skipped)
    assert set(reasons) == {"bomb.png", "large.png", "strip.png"}
    assert "far too many pixels (a decompression bomb?)" in reasons["bomb.png"]  # PIL's own limit
    assert "10000×5000 pixels; training images may have at most 40 megapixels" in reasons["large.png"]
    assert "300000×1 pixels: too narrow (training images may be at most 16:1)" in reasons["strip.png"]
    assert "skipped 3 unreadable of 10 files" in caplog.text


def test_training_files_are_read_only_when_regular_and_bounded(tmp_path):
    from dcgan_hf.decoding import MAX_FILE_BYTES, decode_or_reason, read_file

    with open(tmp_path / "huge.png", "wb") as handle:
        handle.truncate(MAX_FILE_BYTES + 1)  # sparse: costs no disk
    os.mkfifo(tmp_path / "pipe.png")  # reading would block for ever
    for path, reason in ((os.devnull, "not a regular file"), (tmp_path / "pipe.png", "not a regular file"),
                         (tmp_path / "huge.png", "more than 268,435,456: not read")):
        with pytest.raises(ValueError, match=reason):
            read_file(path)
        assert reason in decode_or_reason(lambda: read_file(path), 64)


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    from dcgan_hf.decoding import decode

    ramp = np.linspace(0, 65535, 80 * 80).reshape(80, 80).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "wide.png")
    Image.fromarray(((ramp.astype(np.int64) + 128) // 257).astype(np.uint8)).save(tmp_path / "eight.png")
    with Image.open(tmp_path / "wide.png") as image:
        assert image.mode.startswith("I")  # PIL reads it as 16-bit integers
    sixteen = decode((tmp_path / "wide.png").read_bytes(), 64)
    eight = decode((tmp_path / "eight.png").read_bytes(), 64)
    assert np.array_equal(sixteen, eight)  # the same picture in 8 bits (it used to be ~all 255)
    assert 120 < sixteen.mean() < 135


@pytest.fixture
def shared_folder():
    """A temporary folder an unprivileged user can enter (pytest's tmp_path is private to its owner)."""
    with tempfile.TemporaryDirectory(prefix="dcgan-hostile-") as name:
        os.chmod(name, 0o755)
        yield Path(name)


def test_links_loops_devices_and_unreadable_folders_are_skipped_and_reported(tmp_path, shared_folder):
    from dcgan_hf.data import load_cache

    folder = shared_folder
    write_images(folder, 6)
    (folder / "nested" / "loop").symlink_to("..")  # a folder link back up: would never end
    (folder / "null.jpg").symlink_to(os.devnull)  # a device under an image name
    os.mkfifo(folder / "pipe.png")  # reading would block for ever
    (folder / "gone.jpg").symlink_to(folder / "missing.jpg")
    (folder / "zlinked").symlink_to(folder / "nested")  # a link to a folder is read, a folder only once
    locked = folder / "locked"
    write_images(locked, 2)
    locked.chmod(0)
    try:
        listing = list_as_unprivileged(folder)
    finally:
        locked.chmod(0o755)
    assert listing["names"] == sorted_names_without(folder, "locked")
    assert "locked/ (unreadable folder: Permission denied)" in listing["skipped"]
    for entry in ("nested/loop/ (a link back to a folder above it (a loop)", "null.jpg (not a regular file",
                  "pipe.png (not a regular file", "gone.jpg (No such file or directory)",
                  "zlinked/ (another path to a folder read"):
        assert any(skipped.startswith(entry) for skipped in listing["skipped"]), entry
    cache = load_cache(folder, cache_dir=tmp_path / "cache", workers=1, progress=False)
    assert len(cache) == len(sorted_names(folder)) == 6 + 2
    assert any(entry.startswith("null.jpg") for entry in cache.skipped)


def sorted_names(folder: Path) -> list[str]:
    from dcgan_hf.data import find_images

    return list(find_images(folder).names)


def sorted_names_without(folder: Path, sub: str) -> list[str]:
    return [name for name in sorted_names(folder) if not name.startswith(sub + "/")]


def list_as_unprivileged(folder: Path) -> dict:
    """find_images as a user who cannot read mode-000 folders (root reads everything)."""
    from dcgan_hf.data import find_images

    if os.geteuid() != 0:
        source = find_images(folder)
        return {"names": list(source.names), "skipped": list(source.skipped)}
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child only lists files, then leaves without running any clean-up of the parent's
        try:
            os.close(read)
            os.setgid(65534)
            os.setuid(65534)
            source = find_images(folder)
            result = {"names": list(source.names), "skipped": list(source.skipped)}
        except BaseException as error:  # noqa: BLE001 - reported to the parent, which fails the test
            result = {"error": repr(error)}
        finally:
            os.write(write, json.dumps(result).encode())
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as handle:
        text = handle.read()
    os.waitpid(pid, 0)
    result = json.loads(text)
    assert "error" not in result, result["error"]
    return result


@pytest.mark.parametrize("make, message", [
    (lambda folder: None, r"no images \(\.jpg, \.jpeg, \.png, \.webp, \.bmp\) found under"),
    (lambda folder: (folder / "a.jpg").write_text("no image"), "none of the 1 files in .* could be read as an image"),
], ids=["empty", "nothing-usable"])
def test_a_folder_without_usable_images_is_one_line(tmp_path, capsys, make, message):
    import train

    folder = tmp_path / "data"
    folder.mkdir()
    make(folder)
    code = train.main(["--data", str(folder), "--output-dir", str(tmp_path / "run"), "--data-cache",
                       str(tmp_path / "cache"), "--workers", "1", "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and re.search(message, errors[0]) and "Traceback" not in err


# -- 4. out of disk, signals, leftovers ---------------------------------------------------------

def test_an_image_cache_larger_than_the_disk_is_refused_before_writing(tmp_path):
    from dcgan_hf.data import DataError, load_cache

    write_images(tmp_path / "faces", 2)
    disk = shutil.disk_usage(tmp_path).total
    resolution = math.isqrt(disk // 6) + 1  # two images of resolution² × 3 bytes: more than the whole disk
    with pytest.raises(DataError, match=r"not enough disk space for the image cache .* --data-cache"):
        load_cache(tmp_path / "faces", resolution=resolution, cache_dir=tmp_path / "cache", workers=1,
                   progress=False)
    assert list((tmp_path / "cache").iterdir()) == []  # no .tmp left behind


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGKILL"])
def test_decode_workers_die_with_their_parent(tmp_path, signal_name):
    os.mkfifo(tmp_path / "stuck.zip")  # a worker opening it blocks until the parent is gone
    script = (
        "import os, sys\n"
        "from dcgan_hf import data, image_cache\n"
        "task = ('zip', os.path.join(sys.argv[1], 'stuck.zip'), ['face.png'], 64)\n"
        "for _ in image_cache.map_in_workers(data._decode_chunk, [task, task], workers=2): pass\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], env=PYTHON_ENV)
    try:
        workers = children_of(parent.pid, count=2, timeout=60)
        time.sleep(0.5)  # let them reach the FIFO
        parent.send_signal(getattr(signal, signal_name))
        parent.wait(timeout=30)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(running(pid) for pid in workers):
            time.sleep(0.1)
        assert not [pid for pid in workers if running(pid)], "orphaned decode workers"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def children_of(pid: int, count: int, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = Path(f"/proc/{pid}/task/{pid}/children")
        found = [int(child) for child in children.read_text().split()] if children.exists() else []
        if len(found) >= count:
            return found
        time.sleep(0.1)
    raise AssertionError(f"the decode pool of {pid} never started")


def running(pid: int) -> bool:
    """Alive and not a zombie (a dead orphan waits for init to reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_stale_cache_and_hub_folder_copies_are_removed(tmp_path):
    from dcgan_hf import Discriminator
    from dcgan_hf.data import load_cache
    from dcgan_hf.files import remove_stale_copies
    from dcgan_hf.training import publish

    write_images(tmp_path / "faces", 4)
    cache, dead = tmp_path / "cache", dead_pid()
    cache.mkdir()
    stale = cache / f"{'0' * 24}.npy.1234abcd.tmp-{dead}"  # a cache a killed run was writing
    live = cache / f"{'1' * 24}.npy.1234abcd.tmp-{os.getpid()}"  # one another (live) process is writing
    stale.write_bytes(b"x" * 1000)
    live.write_bytes(b"x")
    load_cache(tmp_path / "faces", cache_dir=cache, workers=1, progress=False)
    assert not stale.exists() and live.exists()

    run = tmp_path / "run"
    (run / f".hub.tmp-{dead}" / "training_state").mkdir(parents=True)  # a build killed half-way
    (run / f".hub.old-{dead}").mkdir()
    remove_stale_copies(run / "hub")
    assert list(run.iterdir()) == []
    with pytest.raises(FileNotFoundError):  # a build that fails half-way (here: its checkpoint vanished)
        publish.build_hub_folder(run / "hub", generator=Generator(ngf=8), discriminator=Discriminator(ndf=8),
                                 checkpoint=tmp_path / "vanished", tensorboard_dir=None, extras={},
                                 card={"title": "t", "training": {}})
    assert list(run.iterdir()) == []  # its half-built copy is gone too


# -- 5. generate: every flag bounded, one line each -----------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["--seeds", "0-4294967295"], "4,294,967,296 seeds asked for; at most 4,096"),
    (["--interpolate", "0-4294967295", "--out", "w.gif"], "at most 256"),
    (["--interpolate", "1,2", "--frames", str(10**9), "--out", "w.gif"], "--frames must be from 2 to 1000"),
    (["--nrow", "-3"], "--nrow must be from 1 to 4096, got -3"),
    (["--device", "bogus"], "unknown device 'bogus'"),
    (["--interpolate", "1,2", "--duration", "-5", "--out", "w.gif"], "--duration must be from 20 to 60000 ms"),
    (["--out", "grid.txt"], "--out must end in .png, .jpg, .jpeg, .webp"),
    (["--out", "grid"], "--out must end in"),
    (["--interpolate", "1,2", "--out", "walk.mp4"], "--out for --interpolate must end in .gif"),
], ids=["seeds", "keyframes", "frames", "nrow", "device", "duration", "txt", "no-suffix", "mp4"])
def test_generate_flags_are_bounded_with_one_line(model_dir, tmp_path, capsys, args, message):
    from dcgan_hf.__main__ import main

    args = args if "--out" in args else [*args, "--out", "x.png"]
    args[args.index("--out") + 1] = str(tmp_path / args[args.index("--out") + 1])
    assert main(["generate", "--model", str(model_dir), *args]) == 2
    error = capsys.readouterr().err
    assert error.strip().count("\n") == 0 and message in error, error
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix, format_name", [(".jpg", "JPEG"), (".jpeg", "JPEG"), (".webp", "WEBP"),
                                                 (".PNG", "PNG")])
def test_generate_writes_the_format_its_file_name_says(model_dir, tmp_path, suffix, format_name):
    from dcgan_hf.__main__ import main

    out = tmp_path / f"grid{suffix}"
    assert main(["generate", "--model", str(model_dir), "--seeds", "0-3", "--out", str(out)]) == 0
    with Image.open(out) as image:
        assert image.format == format_name and image.size == (134, 134)
    strip = tmp_path / f"strip{suffix}"
    assert main(["generate", "--model", str(model_dir), "--interpolate", "1,2", "--frames", "3", "--out",
                 str(strip)]) == 0
    with Image.open(strip) as image:
        assert image.format == format_name and image.size == (3 * 66 + 2, 68)


def test_every_cli_reads_device_the_same_way_with_one_line(tmp_path, capsys):
    from dcgan_hf.devices import DeviceError, resolve_device
    from dcgan_hf.evaluate import main as evaluate_main

    assert resolve_device(" CPU ") == torch.device("cpu") and resolve_device("cpu", local_rank=1).index is None
    for name, message in (("bogus", "unknown device 'bogus'"), ("mps", "unsupported device 'mps'")):
        with pytest.raises(DeviceError, match=message):
            resolve_device(name)
    if not torch.cuda.is_available():
        assert resolve_device("auto", local_rank=1) == torch.device("cpu")
        with pytest.raises(DeviceError, match="--device cuda:1 was asked for, but torch sees no CUDA GPU"):
            resolve_device("cuda:1")
    assert evaluate_main(["--model", "m", "--real", "r", "--device", "bogus"]) == 2
    assert capsys.readouterr().err == "error: unknown device 'bogus': use auto, cpu or cuda[:N]\n"
    done = subprocess.run([sys.executable, str(ROOT / "train.py"), "--dry-run", "--device", "bogus", "--output-dir",
                           str(tmp_path / "run")], capture_output=True, text=True, env=PYTHON_ENV, cwd=ROOT)
    assert done.returncode == 2 and done.stderr == "error: unknown device 'bogus': use auto, cpu or cuda[:N]\n"


# -- 6. atomic writes never touch the process umask ------------------------------------------

def test_write_atomic_never_changes_the_umask_and_still_follows_it(tmp_path):
    from dcgan_hf.files import write_atomic

    umask_calls = []

    def watch(frame, event, arg):
        if event == "c_call" and arg is os.umask:
            umask_calls.append(arg)

    previous = os.umask(0o027)
    sys.setprofile(watch)
    try:
        target = write_atomic(tmp_path / "a.png", b"\x89PNG")
    finally:
        sys.setprofile(None)
        os.umask(previous)
    assert umask_calls == []  # a umask(0) window would give another thread's new files mode 0666
    assert (target.stat().st_mode & 0o777) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]
