"""ONNX Runtime against PyTorch for the generator, on the CPU, in the same run.

The model (default: the bundled one) is exported with ``dcgan_hf.export.export_onnx`` (checked
within 1e-4), then for 1 and 2 intra-op threads and batches of 1 and 64 latents, a plain fp32
eager ``G(z)`` under ``inference_mode`` (the baseline) and an onnxruntime CPU session
(``intra_op_num_threads`` = the same count) run on the same latents, alternating call by
call so both see the same machine. It prints median ms, images/s, the ratio torch/onnxruntime
(> 1: onnxruntime is faster) and the max |difference|. onnxruntime's thread-pool spinning is
switched off so its idle pool threads do not steal the core torch's OpenMP team runs on next
(torch's own OpenMP threads follow OMP_WAIT_POLICY as usual). A benchmark, not a test.

    .venv/bin/python bench/onnx_vs_torch.py [--model FOLDER|REPO] [--reps 30] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

import numpy as np  # noqa: E402
import torch  # noqa: E402

from dcgan_hf.export import export_onnx  # noqa: E402
from dcgan_hf.hub.loading import BUNDLED_MODEL, load_generator  # noqa: E402
from dcgan_hf.latent import latents  # noqa: E402

BATCHES = (1, 64)
THREADS = (1, 2)


def ort_session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def timed_ms(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(BUNDLED_MODEL))
    parser.add_argument("--reps", type=int, default=30, help="timed calls per (threads, batch, runtime)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    import onnxruntime

    generator = load_generator(args.model).eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "generator.onnx"
        start = time.perf_counter()
        check = export_onnx(generator, path)
        export_s = time.perf_counter() - start
        print(f"model {args.model}: nz={generator.nz} ngf={generator.ngf}; export {export_s:.1f} s, "
              f"check max|diff| {check:.2g}; torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, "
              f"{platform.machine()} × {len(os.sched_getaffinity(0))} cpus, load avg {os.getloadavg()[0]:.2f}")
        rows = []
        for threads in THREADS:
            torch.set_num_threads(threads)
            runner = ort_session(path, threads)
            for batch in BATCHES:
                z = latents(list(range(batch)), generator.nz)
                feed = {"z": z.numpy()}
                with torch.inference_mode():
                    def torch_call():
                        return generator(z)

                    def ort_call():
                        return runner.run(["images"], feed)[0]

                    expected, actual = torch_call().numpy(), ort_call()  # warm-up, and the check
                    for _ in range(2):
                        torch_call(), ort_call()
                    torch_ms, ort_ms = [], []
                    for _ in range(args.reps):
                        torch_ms.append(timed_ms(torch_call))
                        ort_ms.append(timed_ms(ort_call))
                t, o = statistics.median(torch_ms), statistics.median(ort_ms)
                row = {"threads": threads, "batch": batch, "torch_ms": t, "ort_ms": o, "ratio": t / o,
                       "torch_img_s": batch / t * 1e3, "ort_img_s": batch / o * 1e3,
                       "max_abs_diff": float(np.abs(actual - expected).max())}
                rows.append(row)
                print(f"threads {threads}  batch {batch:>2}:  torch {t:7.2f} ms ({row['torch_img_s']:6.0f} img/s)   "
                      f"onnxruntime {o:7.2f} ms ({row['ort_img_s']:6.0f} img/s)   torch/ort {row['ratio']:.2f}   "
                      f"max|diff| {row['max_abs_diff']:.1e}")
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "export_s": export_s, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
