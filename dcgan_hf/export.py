"""Export a generator to ONNX: ``python -m dcgan_hf export MODEL out.onnx``.

The graph takes ``z`` float32 (batch, nz) and returns ``images`` float32 (batch, nc, 64, 64)
in [-1, 1] (eval mode: BatchNorm folded to its running statistics), with a dynamic batch
dimension. After writing, the file is checked with ``onnx.checker`` and run under
``onnxruntime`` beside PyTorch on the same latents; the export fails unless they agree within
``tolerance`` (1e-4). ``onnx``, ``onnxscript`` (torch's exporter) and ``onnxruntime`` are the
optional extra ``dcgan_hf[onnx]``, imported only here. ``--opset`` must be one the installed
``onnx`` defines, and the file must carry the opset asked for (torch silently keeps its default
when it cannot convert). Memory is checked first: an export holds ~5.5× the weights at once
(~5 GB for the largest allowed generator, nz=1024, ngf=512), and a process without that room
gets a message instead of a crash in native code.

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
import math
import re
import resource
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
EXPORT_MEMORY = 6.5  # peak resident memory of an export, in multiples of the weights' bytes (measured: ≤ 5.5)
EXPORT_ADDRESS_SPACE = 8.0  # peak address space, likewise (measured: ≤ 7.1)


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


ORT_TELEMETRY_ENV = "ORT_DISABLE_TELEMETRY"


def _require(module: str) -> Any:
    # onnxruntime's telemetry writes a session file ($TMPDIR/.ses) when it is imported (here by
    # torch's exporter or by the check), which outlives the app's temporary folders; nothing here
    # wants it. Set before any of these imports; a setting of the user's own wins.
    os.environ.setdefault(ORT_TELEMETRY_ENV, "1")
    try:
        return __import__(module)
    except ImportError:
        raise ExportError(f"ONNX export needs the `{module}` package: {INSTALL_HINT}") from None


def export_onnx(
    generator: nn.Module, path: str | os.PathLike, *, opset: int | None = None, tolerance: float = TOLERANCE,
    verify: bool = True,
) -> float:
    """Write ``generator`` as an ONNX graph to ``path`` (atomically); return its largest difference from PyTorch.

    Raises :class:`ExportError` for anything that is not a DCGAN generator, for an opset outside
    what the installed ``onnx`` knows or one torch cannot convert the graph to, for a model
    this process has not the memory to export (checked before anything is allocated), for a
    graph torch cannot export, and (with ``verify``) for outputs that differ from PyTorch by
    more than ``tolerance`` under onnxruntime.
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
    import torch._dynamo  # noqa: F401  the exporter's machinery, loaded before the room for the export is measured

    check_opset(opset)
    check_memory(generator)
    model = _LatentsToImages(generator).to("cpu", torch.float32).eval()
    data = _graph_bytes(model, nz, opset, type(generator).__name__)
    difference = _max_difference(model, nz, data) if verify else float("nan")
    if verify and not difference <= tolerance:
        raise ExportError(f"onnxruntime's output differs from PyTorch's by {difference:.3g} (> {tolerance:g}); "
                          f"nothing written")
    return data, difference


def check_opset(opset: object) -> None:
    """``opset`` must be None (torch's default) or a whole number the installed ``onnx`` defines."""
    onnx = _require("onnx")

    newest = onnx.defs.onnx_opset_version()
    if opset is not None and (type(opset) is not int or not 1 <= opset <= newest):
        raise ExportError(f"--opset must be a whole number from 1 to {newest} (the newest this onnx "
                          f"{onnx.__version__} knows), got {opset!r}")


def check_memory(generator: nn.Module) -> None:
    """Refuse, before anything is allocated, a generator this process has not the memory to export.

    The export holds a copy of the weights, the serialized graph and onnxruntime's session
    together (``bench/hostile_memory.py`` measures the peak at :data:`EXPORT_MEMORY` × the
    weights' bytes, and the address space at :data:`EXPORT_ADDRESS_SPACE` ×); without room
    for that, the process would be killed or crash in native code with no message.
    """
    weights = sum(tensor.numel() * tensor.element_size()
                  for tensor in [*generator.parameters(), *generator.buffers()])
    room = memory_room()
    for need, (left, bound) in ((EXPORT_MEMORY * weights, room["memory"]),
                                (EXPORT_ADDRESS_SPACE * weights, room["address space"])):
        if need > left:
            raise ExportError(
                f"exporting this generator ({_size(weights)} of weights) needs about {_size(need)} more memory, "
                f"and {_size(max(left, 0))} is left under {bound}; export it where more memory is free")


def _size(count: float) -> str:
    return f"{count / 1e9:.1f} GB" if count >= 1e9 else f"{count / 1e6:.0f} MB"


def memory_room() -> dict[str, tuple[float, str]]:
    """What this process may still allocate: resident memory and address space, each with what bounds it."""
    status = _kib_fields("/proc/self/status")
    memory = [(_kib_fields("/proc/meminfo").get("MemAvailable", math.inf), "the memory available on this machine")]
    cgroup_max, cgroup_now = _read_number("/sys/fs/cgroup/memory.max"), _read_number("/sys/fs/cgroup/memory.current")
    if cgroup_max is not None and cgroup_now is not None:
        memory.append((cgroup_max - cgroup_now, "this container's memory limit"))
    address = [(math.inf, "no address-space limit")]
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        address.append((soft - status.get("VmSize", 0), "this process's address-space limit (ulimit -v)"))
    return {"memory": min(memory), "address space": min(address)}


def _kib_fields(path: str) -> dict[str, float]:
    """``Name: N kB`` lines of a /proc file, in bytes (empty where the file does not exist)."""
    fields = {}
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            name, _, value = line.partition(":")
            parts = value.split()
            if len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
                fields[name] = int(parts[0]) * 1024.0
    return fields


def _read_number(path: str) -> float | None:
    with contextlib.suppress(OSError, ValueError):
        return float(Path(path).read_text().strip())  # "max" (no limit) is a ValueError: None
    return None


def _graph_bytes(model: nn.Module, nz: int, opset: int | None, what: str) -> bytes:
    """The exported graph, serialized and checked; the exporter's own copies are dropped on the way."""
    import onnx

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
        raise ExportError(f"torch cannot export this {what} to ONNX: {_one_line(_root(error))}") from None
    del program
    written = {entry.domain or "ai.onnx": entry.version for entry in proto.opset_import}.get("ai.onnx")
    data = proto.SerializeToString()
    del proto
    if opset is not None and written != opset:  # torch falls back to its default when it cannot convert
        raise ExportError(f"torch could not convert the graph to opset {opset} (it wrote opset {written}); "
                          f"nothing written: choose another --opset, or leave it out")
    try:
        onnx.checker.check_model(data, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
        raise ExportError(f"the exported graph is not valid ONNX: {_one_line(error)}") from None
    return data


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
    return _max_difference(_LatentsToImages(generator).to("cpu", torch.float32).eval(), generator.nz, model, seeds)


def _max_difference(reference_model: nn.Module, nz: int, model: str | os.PathLike | bytes,
                    seeds: Sequence[int] = CHECK_SEEDS) -> float:
    z = latents(list(seeds), nz)
    with torch.inference_mode():
        expected = reference_model(z).numpy()
    (actual,) = session(model).run(["images"], {"z": z.numpy()})
    if actual.shape != expected.shape:
        return float("inf")
    return float(np.abs(actual - expected).max())


@contextlib.contextmanager
def _quiet():
    """torch.onnx reports each stage on stdout and warns about things we handle (onnxscript's version
    converter logs a traceback when it cannot reach an opset: the written opset is checked instead);
    keep the CLI's (and the app's log: live mode exports at start-up) output ours."""
    loggers = {name: logging.getLogger(name) for name in ("torch.onnx", "onnxscript", "onnx_ir")}
    previous = {name: logger.level for name, logger in loggers.items()}
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loggers["torch.onnx"].setLevel(logging.ERROR)
        loggers["onnx_ir"].setLevel(logging.ERROR)  # its passes log at INFO
        loggers["onnxscript"].setLevel(logging.CRITICAL)
        try:
            yield
        finally:
            for name, logger in loggers.items():
                logger.setLevel(previous[name])


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
    parser.add_argument("--opset", type=int, default=None,
                        help="ONNX opset, from 16 up to what the installed onnx knows (default: torch's exporter default)")
    parser.add_argument("--no-verify", dest="verify", action="store_false",
                        help="skip the onnxruntime-vs-PyTorch check (1e-4)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .hub.loading import load_generator
    from .models import ModelLoadError

    if args.out.suffix.lower() != ".onnx":
        print(f"error: the output must be an .onnx file, got {args.out}", file=sys.stderr)
        return 2
    try:
        check_opset(args.opset)  # before the model is loaded: a bad flag is refused at once
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
