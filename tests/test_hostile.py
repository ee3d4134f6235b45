"""Hostile inputs (issue 11): each file, flag or signal that once crashed a run, allocated
gigabytes or deleted data, built here in miniature. Every case must end in one clear error
(or a skipped, reported file) while the good inputs beside it keep working."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from dcgan_hf import Generator, ModelLoadError
from dcgan_hf.models import SIZE_LIMITS

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


def peak_rss_mb(code: str) -> float:
    """Peak resident memory of a fresh interpreter running ``code`` (after importing dcgan_hf)."""
    script = f"import resource, sys, dcgan_hf\n{code}\nprint(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=PYTHON_ENV, timeout=300)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1]) / 1024


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
    # a Generator(ngf=512) is ~700 MB of float32: loading must stay far below that
    good = peak_rss_mb(f"dcgan_hf.Generator.from_pretrained({str(model_dir)!r})")
    hostile = peak_rss_mb(f"try:\n    dcgan_hf.Generator.from_pretrained({str(folder)!r})\n"
                          f"except dcgan_hf.ModelLoadError:\n    pass")
    assert hostile < good + 100, (good, hostile)


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
    error = capsys.readouterr().err.strip().splitlines()[-1]  # argparse: the usage line, then this one
    assert "error: invalid training config" in error and re.search(message, error), error


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
    torch.save(Generator(ngf=8).state_dict(), tmp_path / "good.pth")
    good = peak_rss_mb(f"from dcgan_hf.legacy import read_legacy\nread_legacy({str(tmp_path / 'good.pth')!r})")
    hostile = peak_rss_mb("from dcgan_hf.legacy import read_legacy\ntry:\n"
                          f"    read_legacy({str(tmp_path / 'ngf500.pth')!r})\nexcept dcgan_hf.ModelLoadError:\n    pass")
    assert hostile < good + 100, (good, hostile)  # building Generator(nz=1, ngf=500) first cost ~500 MB


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
