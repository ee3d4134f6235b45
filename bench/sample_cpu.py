"""Sampling speed: our API against a plain eager forward, idle and under load (CPU), and
the demo's serving layer; the same checks on a GPU with ``--device cuda``.

Part 1 times ``dcgan_hf.sample`` (latents + forward + uint8) for 1, 16 and 64 images
against a plain fp32 forward of the same network on the same latents, at 1 and 2
intra-op threads, all alternating inside one loop so they see the same machine; first
idle, then with two spinner processes keeping both cores busy. It prints the API/plain
ratio, GFLOP/s and the max abs difference between the two (uint8 levels).

Part 2 checks the serving layer (``dcgan_hf.serving``: one inference worker) with 1 thread
and with 2 threads for 16-image chunks, under the same two conditions: one image through
the worker, and 4 concurrent 16-image requests through it against the same 4 one after
another, and against 4 threads calling ``sample`` directly (a server without a shared
worker). On a GPU: the fp16-vs-fp32 start-up check, and whether a seed gives the same
image alone and in a batch there. A benchmark, not a test: it prints, it asserts nothing.

    .venv/bin/python bench/sample_cpu.py [--ngf 64] [--reps 20] [--device cuda] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from dcgan_hf import Generator, latents, sample  # noqa: E402
from dcgan_hf.images import grid_image, png_bytes, to_uint8  # noqa: E402
from dcgan_hf.models import dcgan_init  # noqa: E402
from dcgan_hf.serving import GenerateRequest, ModelServer, ThreadPolicy, half_precision_difference  # noqa: E402

SIZES = (1, 16, 64)


@contextmanager
def busy_cores(count: int) -> Iterator[None]:
    """``count`` processes spinning a core each, for as long as the block runs."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        time.sleep(0.5)  # let them get scheduled
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
        for spinner in spinners:
            spinner.wait()


def flops_per_image(generator: Generator) -> int:
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        generator(torch.zeros(1, generator.nz, device=next(generator.parameters()).device))
    return counter.get_total_flops()


def elapsed_ms(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1e3


def plain_forward(generator: Generator, z: torch.Tensor) -> torch.Tensor:
    """The baseline: one eager forward, no latents, no uint8."""
    with torch.no_grad():
        return generator(z)


def generate_directly(generator: Generator, request: GenerateRequest) -> bytes:
    """What ``ModelServer.generate`` makes (images, grid, PNG), called on the caller's thread."""
    return png_bytes(grid_image(sample(generator, request.seeds, truncation=request.truncation)))


def generate_each(server: ModelServer, requests: list[GenerateRequest]) -> None:
    for request in requests:
        server.generate(request)


def reps_for(size: int, reps: int) -> int:
    return max(3, reps // max(1, size // 8))


def compare_api_to_plain(
    generator: Generator, thread_counts: list[int], reps: int, flops: int, condition: str
) -> list[dict[str, Any]]:
    """API vs plain forward per size; thread counts alternate inside each rep (same machine state)."""
    device = next(generator.parameters()).device
    rows = []
    for size in SIZES:
        seeds = list(range(size))
        z = latents(seeds, generator.nz).to(device)
        api, plain = partial(sample, generator, seeds), partial(plain_forward, generator, z)
        difference = (api().int() - to_uint8(plain()).cpu().int()).abs().max().item()  # also the warm-up
        times: dict[tuple[int, str], list[float]] = {}
        for rep in range(reps_for(size, reps)):
            for threads in thread_counts:
                torch.set_num_threads(threads)
                plain()  # untimed: the first region after a thread-count change rebuilds the OpenMP team
                order = (("api", api), ("plain", plain)) if rep % 2 == 0 else (("plain", plain), ("api", api))
                for name, fn in order:  # alternate who goes first, so neither always gets the warmer cache
                    times.setdefault((threads, name), []).append(elapsed_ms(fn))
        for threads in thread_counts:
            api_ms, base = statistics.median(times[threads, "api"]), statistics.median(times[threads, "plain"])
            rows.append(
                dict(condition=condition, threads=threads, n=size, api_ms=api_ms, plain_ms=base,
                     ratio=api_ms / base, api_gflops=flops * size / api_ms / 1e6,
                     plain_gflops=flops * size / base / 1e6, max_abs_diff=difference)
            )
            print(
                f"  threads={threads} n={size:2d}  api {api_ms:7.1f} ms  plain {base:7.1f} ms  "
                f"ratio {api_ms / base:5.2f}  api {flops * size / api_ms / 1e6:6.1f} GFLOP/s  "
                f"plain {flops * size / base / 1e6:6.1f} GFLOP/s  max|diff| {difference}"
            )
    return rows


def run_concurrently(jobs: list[Callable[[], object]]) -> float:
    """Wall time (ms) for ``jobs`` started together on their own threads."""
    threads = [threading.Thread(target=job) for job in jobs]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return (time.perf_counter() - start) * 1e3


def check_serving(generator: Generator, device: str, reps: int, condition: str) -> list[dict[str, Any]]:
    """The worker under each thread policy (CPU) or as ModelServer picks it (GPU), in alternating rounds."""
    if device == "cpu":
        policies = {threads: ThreadPolicy(max_threads=threads) for threads in sorted({1, os.cpu_count() or 1})}
    else:
        policies = {1: None}
    servers = {
        threads: ModelServer.serve(generator, device, requested="bench", policy=policy)
        for threads, policy in policies.items()
    }
    one = GenerateRequest.parse(0, 1)
    sixteen = [GenerateRequest.parse(100 * i, 16) for i in range(4)]
    times: dict[tuple[int, str], list[float]] = {}
    try:
        for server in servers.values():
            server.generate(one), server.generate(sixteen[0])  # warm-up
        for _ in range(reps):
            for threads, server in servers.items():
                times.setdefault((threads, "one"), []).append(elapsed_ms(partial(server.generate, one)))
        for _ in range(max(2, reps // 2)):
            for threads, server in servers.items():
                sequential = elapsed_ms(partial(generate_each, server, sixteen))
                shared = run_concurrently([partial(server.generate, request) for request in sixteen])
                times.setdefault((threads, "sequential"), []).append(sequential)
                times.setdefault((threads, "shared"), []).append(shared)
            torch.set_num_threads(max(policies))  # threads started now get this many intra-op threads
            unshared = run_concurrently([partial(generate_directly, generator, request) for request in sixteen])
            times.setdefault((0, "unshared"), []).append(unshared)
        precision = {threads: server.status.precision for threads, server in servers.items()}
    finally:
        for server in servers.values():
            server.close()
    median = {key: statistics.median(values) for key, values in times.items()}
    rows = []
    for threads in servers:
        sequential, shared = median[threads, "sequential"], median[threads, "shared"]
        rows.append(
            dict(condition=condition, worker_threads_for_16=threads, precision=precision[threads],
                 one_image_ms=median[threads, "one"], sequential_4x16_ms=sequential, concurrent_4x16_ms=shared,
                 ratio=shared / sequential, no_worker_concurrent_4x16_ms=median[0, "unshared"])
        )
        print(
            f"  worker ({precision[threads]}; {threads} thread(s) for 16-image chunks): 1 image "
            f"{median[threads, 'one']:6.1f} ms; 4 x 16 images one after another {sequential:7.1f} ms, "
            f"concurrent {shared:7.1f} ms (ratio {shared / sequential:4.2f})"
        )
    print(f"  4 x 16 images on 4 threads, each calling the library itself (no worker): {median[0, 'unshared']:7.1f} ms")
    return rows


def check_gpu_pixels(generator: Generator) -> dict[str, Any]:
    """fp16 vs fp32, GPU vs CPU, and a seed alone vs in a batch, on the GPU."""
    _, half_difference = half_precision_difference(generator)
    on_gpu = sample(generator, range(16))
    on_cpu = sample(generator.to("cpu"), range(16))
    generator.to("cuda")
    alone = torch.cat([sample(generator, [seed]) for seed in range(16)])
    result = dict(
        fp16_vs_fp32_max_abs_diff=half_difference,
        gpu_vs_cpu_max_abs_diff=(on_gpu.int() - on_cpu.int()).abs().max().item(),
        alone_vs_batch_max_abs_diff=(alone.int() - on_gpu.int()).abs().max().item(),
        gpu=torch.cuda.get_device_name(),
    )
    print("  " + ", ".join(f"{key} {value}" for key, value in result.items()))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ngf", type=int, default=64)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA GPU")
    generator = Generator(ngf=args.ngf)
    dcgan_init(generator, torch.Generator().manual_seed(0))
    generator = generator.to(args.device).eval()
    flops = flops_per_image(generator)
    default_threads = torch.get_num_threads()
    policy = ThreadPolicy.for_device(torch.device(args.device)).describe()
    print(
        f"Generator(ngf={args.ngf}) on {args.device}: {flops / 1e9:.3f} GFLOP/image; torch {torch.__version__}, "
        f"{os.cpu_count()} CPUs, default threads {default_threads}, load avg {os.getloadavg()[0]:.2f}; "
        f"dcgan_hf.serving's thread policy here: {policy}"
    )
    results: dict[str, Any] = dict(
        device=args.device, ngf=args.ngf, gflop_per_image=flops / 1e9, torch=torch.__version__,
        cpus=os.cpu_count(), policy=policy, load_avg_start=os.getloadavg()[0], sampling=[], serving=[],
    )
    conditions = (("idle", 0), ("both cores busy (2 spinners)", 2)) if args.device == "cpu" else (("gpu", 0),)
    for condition, spinners in conditions:
        with busy_cores(spinners):
            print(f"\n[{condition}] dcgan_hf.sample vs plain eager forward")
            thread_counts = sorted({1, default_threads}) if args.device == "cpu" else [default_threads]
            results["sampling"] += compare_api_to_plain(generator, thread_counts, args.reps, flops, condition)
            print(f"[{condition}] serving layer: one worker; generate = render + grid + PNG")
            results["serving"] += check_serving(generator, args.device, args.reps, condition)
        torch.set_num_threads(default_threads)
    if args.device == "cuda":
        print("\n[gpu] pixels")
        results["gpu_pixels"] = check_gpu_pixels(generator)
    results["load_avg_end"] = os.getloadavg()[0]
    print(f"\nload avg at the end {results['load_avg_end']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
