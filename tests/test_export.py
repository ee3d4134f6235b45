"""ONNX export: dynamic batch, onnxruntime within 1e-4 of PyTorch, clear errors for what cannot be exported."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dcgan_hf import Discriminator, Generator
from dcgan_hf.export import ExportError, export_onnx, session
from dcgan_hf.export import main as export_main
from dcgan_hf.latent import latents
from test_hostile import within_address_space
from test_sampling import vivid as make_vivid

import onnx  # noqa: E402,F401  (requirements-test.txt installs the onnx extra: fail, never skip)
import onnxruntime  # noqa: E402,F401
import onnxscript  # noqa: E402,F401

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def vivid() -> Generator:
    """A random generator with non-trivial BN statistics, so eval-mode folding is tested too."""
    torch.manual_seed(0)
    return make_vivid(Generator(nz=32, ngf=16))


def test_onnx_matches_pytorch_at_every_batch_size(vivid, tmp_path):
    vivid.train()
    difference = export_onnx(vivid, tmp_path / "g.onnx")
    assert vivid.training and vivid.main[1].training  # the caller's model keeps its mode
    vivid.eval()
    assert difference <= 1e-4
    assert not list(tmp_path.glob("*.data")) and not list(tmp_path.glob(".*part"))  # one self-contained file
    runner = session(tmp_path / "g.onnx", threads=1)
    (z_input,), (images_output,) = runner.get_inputs(), runner.get_outputs()
    assert z_input.name == "z" and z_input.shape[1] == 32 and isinstance(z_input.shape[0], str)  # dynamic batch
    assert images_output.shape[1:] == [3, 64, 64]
    for count in (1, 3, 64):
        z = latents(list(range(100, 100 + count)), 32)
        with torch.inference_mode():
            expected = vivid(z).numpy()
        (actual,) = runner.run(["images"], {"z": z.numpy()})
        assert actual.shape == (count, 3, 64, 64)
        assert np.abs(actual - expected).max() <= 1e-4


def test_the_cli_exports_a_folder(vivid, tmp_path):
    vivid.save_pretrained(tmp_path / "model")
    result = subprocess.run([sys.executable, "-m", "dcgan_hf", "export", str(tmp_path / "model"),
                             str(tmp_path / "faces.onnx")], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"wrote {tmp_path / 'faces.onnx'} (z: (batch, 32)")
    assert "max |onnxruntime − torch|" in result.stdout and "[torch.onnx]" not in result.stdout
    assert (tmp_path / "faces.onnx").stat().st_size > 100_000


def test_what_cannot_be_exported_says_why(vivid, tmp_path, monkeypatch, capsys):
    Discriminator(ndf=8).save_pretrained(tmp_path / "critic")
    cases = {  # the CLI's main() in-process (test_the_cli_exports_a_folder runs the real command)
        (str(tmp_path / "critic"), "x.onnx"): "holds a 'dcgan-discriminator' model, not a 'dcgan-generator'",
        (str(tmp_path / "missing"), "x.onnx"): "no model folder at",
        (str(tmp_path / "critic"), "x.png"): "the output must be an .onnx file",
        (str(tmp_path / "critic"), "x.onnx", "--opset", "99999"): "--opset must be a whole number from 1 to",
    }
    for (model, out, *flags), message in cases.items():
        code = export_main([model, str(tmp_path / out), *flags])
        stderr = capsys.readouterr().err
        assert code == 2 and message in stderr and stderr.startswith("error: "), stderr
        assert stderr.count("\n") == 1 and "Traceback" not in stderr
    assert not list(tmp_path.glob("*.onnx"))

    with pytest.raises(ExportError, match="only a dcgan_hf Generator"):
        export_onnx(Discriminator(ndf=8), tmp_path / "d.onnx")

    @torch.library.custom_op("dcgan_hf_test::mystery", mutates_args=())
    def mystery(x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @mystery.register_fake
    def _(x):
        return torch.empty_like(x)

    class Mystery(torch.nn.Module):  # a custom layer with no ONNX translation
        def forward(self, x):
            return mystery(x)

    odd = Generator(ngf=8)
    odd.main.append(Mystery())
    with pytest.raises(ExportError, match=r"torch cannot export this Generator to ONNX: .*No ONNX function found "
                                          r"for <OpOverload\(op='dcgan_hf_test.mystery'") as caught:
        export_onnx(odd, tmp_path / "odd.onnx")
    assert "\n" not in str(caught.value) and "\x1b" not in str(caught.value)

    broken = Generator(ngf=8)
    with torch.no_grad():
        broken.main[0].weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(ExportError, match="differs from PyTorch's by nan"):
        export_onnx(broken, tmp_path / "nan.onnx")
    assert not list(tmp_path.glob("*.onnx"))

    monkeypatch.setitem(sys.modules, "onnxscript", None)  # as if the [onnx] extra were not installed
    with pytest.raises(ExportError, match=r"needs the `onnxscript` package: pip install 'dcgan_hf\[onnx\]'"):
        export_onnx(vivid, tmp_path / "g.onnx")


def test_an_opset_is_checked_and_what_is_written_is_what_was_asked(vivid, tmp_path, capsys):
    import onnx

    newest = onnx.defs.onnx_opset_version()
    for opset in (-5, 0, 99999, newest + 1, 17.0, True):
        with pytest.raises(ExportError, match=rf"--opset must be a whole number from 1 to {newest} .*got {opset!r}"):
            export_onnx(vivid, tmp_path / "g.onnx", opset=opset)
    vivid.save_pretrained(tmp_path / "model")
    assert export_main([str(tmp_path / "model"), str(tmp_path / "g.onnx"), "--opset", "1"]) == 2
    stderr = capsys.readouterr().err  # torch falls back to its default below 16 (and onnxscript logs a traceback)
    assert stderr == ("error: torch could not convert the graph to opset 1 (it wrote opset 18); nothing written: "
                      "choose another --opset, or leave it out\n"), stderr
    assert not (tmp_path / "g.onnx").exists()
    export_onnx(vivid, tmp_path / "g.onnx", opset=17, verify=False)
    assert {entry.domain or "ai.onnx": entry.version for entry in onnx.load(tmp_path / "g.onnx").opset_import}[
        "ai.onnx"] == 17


def test_an_export_that_does_not_fit_in_memory_is_refused_up_front(tmp_path):
    # an address-space limit 64 MB above what the process uses: a 14 MB generator needs ~110 MB more
    Generator(ngf=64).save_pretrained(tmp_path / "model")
    result = within_address_space(f"sys.exit(main([{str(tmp_path / 'model')!r}, {str(tmp_path / 'g.onnx')!r}]))", 64,
                                  prelude="import onnx, onnxscript, onnxruntime, torch._dynamo\n"
                                          "from dcgan_hf.export import main")  # torch._dynamo: what the export
    # imports before it measures the room it has (onnx_bytes), so the 64 MB are left for the export itself
    assert result.returncode == 2, result.stderr[-2000:]
    assert re.fullmatch(r"error: exporting this generator \(14 MB of weights\) needs about 11\d MB more memory, and "
                        r"[1-6]?\d MB is left under this process's address-space limit \(ulimit -v\); export it "
                        r"where more memory is free\n", result.stderr), result.stderr
    assert not (tmp_path / "g.onnx").exists()
