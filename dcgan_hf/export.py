"""Export a generator to ONNX: ``python -m dcgan_hf export MODEL out.onnx``.

The graph takes ``z`` float32 (batch, nz) and returns ``images`` float32 (batch, nc, 64, 64)
in [-1, 1] (eval mode: BatchNorm folded to its running statistics), with a dynamic batch
dimension. After writing, the file is checked with ``onnx.checker`` and run under
``onnxruntime`` beside PyTorch on the same latents; the export fails unless they agree within
``tolerance`` (1e-4). ``onnx``, ``onnxscript`` (torch's exporter) and ``onnxruntime`` are the
optional extra ``dcgan_hf[onnx]``, imported only here.

    python -m dcgan_hf export dcgan_hf/pretrained/celeba64 faces.onnx
    python -m dcgan_hf export user/dcgan-celeba@epoch-5 faces.onnx

To pixels, as :func:`dcgan_hf.images.to_uint8` does: ``uint8(clip((images + 1) * 127.5 + 0.5, 0, 255))``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import logging
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from .files import write_atomic
from .latent import latents

TOLERANCE = 1e-4
CHECK_SEEDS = (0, 1, 2, 3, 4)  # an odd batch: a graph that only works at the export batch size fails here
INSTALL_HINT = "pip install 'dcgan_hf[onnx]'"
MAX_BATCH = 65536


class ExportError(RuntimeError):
    """A model that cannot be exported (or whose export does not match PyTorch); one line says why."""


class _LatentsToImages(nn.Module):
    """A copy of the generator's network on (batch, nz) latents, without ``forward``'s Python-side shape checks.

    A copy, so exporting never moves the caller's model or changes its train/eval mode.
    """

    def __init__(self, generator: nn.Module) -> None:
        super().__init__()
        self.main = copy.deepcopy(generator.main)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z[:, :, None, None])


def _require(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError:
        raise ExportError(f"ONNX export needs the `{module}` package: {INSTALL_HINT}") from None


def export_onnx(
    generator: nn.Module, path: str | os.PathLike, *, opset: int | None = None, tolerance: float = TOLERANCE,
    verify: bool = True,
) -> float:
    """Write ``generator`` as an ONNX graph to ``path`` (atomically); return its largest difference from PyTorch.

    Raises :class:`ExportError` for anything that is not a DCGAN generator, for a graph torch
    cannot export, and (with ``verify``) for outputs that differ from PyTorch by more than
    ``tolerance`` under onnxruntime.
    """
    data, difference = onnx_bytes(generator, opset=opset, tolerance=tolerance, verify=verify)
    write_atomic(path, data)
    return difference


def onnx_bytes(
    generator: nn.Module, *, opset: int | None = None, tolerance: float = TOLERANCE, verify: bool = True,
) -> tuple[bytes, float]:
    """The serialized ONNX graph of ``generator`` and its largest difference from PyTorch (checked as
    :func:`export_onnx` does); the demo's live mode serves these bytes to the browser."""
    nz = getattr(generator, "nz", None)
    main = getattr(generator, "main", None)
    if not isinstance(generator, nn.Module) or not isinstance(nz, int) or not isinstance(main, nn.Module):
        raise ExportError(f"only a dcgan_hf Generator (with .main and .nz) can be exported, got {type(generator).__name__}")
    for module in ("onnx", "onnxscript"):
        _require(module)
    model = _LatentsToImages(generator).to("cpu", torch.float32).eval()
    example = latents(list(CHECK_SEEDS[:2]), nz)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    try:
        with _quiet():
            program = torch.onnx.export(
                model, (example,), None, input_names=["z"], output_names=["images"], opset_version=opset,
                dynamic_shapes={"z": {0: batch}}, dynamo=True, external_data=False, verbose=False,
            )
        proto = program.model_proto
    except Exception as error:  # noqa: BLE001 - torch.export/onnxscript raise many types; all mean "cannot export"
        raise ExportError(f"torch cannot export this {type(generator).__name__} to ONNX: {_one_line(_root(error))}") from None
    import onnx

    try:
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
        raise ExportError(f"the exported graph is not valid ONNX: {_one_line(error)}") from None
    data = proto.SerializeToString()
    difference = max_difference(generator, data) if verify else float("nan")
    if verify and not difference <= tolerance:
        raise ExportError(f"onnxruntime's output differs from PyTorch's by {difference:.3g} (> {tolerance:g}); "
                          f"nothing written")
    return data, difference


def session(model: str | os.PathLike | bytes, threads: int = 0) -> Any:
    """An onnxruntime CPU session on a file or serialized graph; ``threads`` 0 lets onnxruntime choose."""
    ort = _require("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])


def max_difference(generator: nn.Module, model: str | os.PathLike | bytes, seeds: Sequence[int] = CHECK_SEEDS) -> float:
    """Largest absolute difference between PyTorch and onnxruntime outputs for ``seeds``' latents."""
    z = latents(list(seeds), generator.nz)
    reference_model = _LatentsToImages(generator).to("cpu", torch.float32).eval()
    with torch.inference_mode():
        expected = reference_model(z).numpy()
    (actual,) = session(model).run(["images"], {"z": z.numpy()})
    if actual.shape != expected.shape:
        return float("inf")
    return float(np.abs(actual - expected).max())


@contextlib.contextmanager
def _quiet():
    """torch.onnx reports each stage on stdout and warns about things we handle; keep the CLI's output ours."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript", "onnx_ir")]  # their passes log at INFO
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        previous = [logger.level for logger in loggers]
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, previous):
                logger.setLevel(level)


def _root(error: BaseException) -> BaseException:
    """The innermost cause: torch.onnx wraps the reason (e.g. "No ONNX function found for …") in two layers of advice."""
    while error.__cause__ is not None:
        error = error.__cause__
    return error


def _one_line(error: BaseException) -> str:
    text = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", str(error)).split()) or type(error).__name__
    return f"{type(error).__name__}: {text[:400]}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dcgan_hf export",
        description="Export a generator to ONNX (dynamic batch), checked against PyTorch under onnxruntime.",
        epilog=f"Needs the [onnx] extra: {INSTALL_HINT}",
    )
    parser.add_argument("model", metavar="MODEL", help="a model folder or Hub repo id, optionally @revision")
    parser.add_argument("out", type=Path, metavar="OUT.onnx", help="the ONNX file to write")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default: torch's exporter default)")
    parser.add_argument("--no-verify", dest="verify", action="store_false",
                        help="skip the onnxruntime-vs-PyTorch check (1e-4)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .hub import load_generator
    from .models import ModelLoadError

    if args.out.suffix.lower() != ".onnx":
        print(f"error: the output must be an .onnx file, got {args.out}", file=sys.stderr)
        return 2
    try:
        generator = load_generator(args.model)
        difference = export_onnx(generator, args.out, opset=args.opset, verify=args.verify)
    except (ExportError, ModelLoadError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    checked = f"max |onnxruntime − torch| = {difference:.2g} on {len(CHECK_SEEDS)} seeds" if args.verify else "not verified"
    print(f"wrote {args.out} (z: (batch, {generator.nz}) → images: (batch, {generator.nc}, 64, 64) in [-1, 1]; "
          f"{checked})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
