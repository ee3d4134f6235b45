"""The one inference worker: every torch call of the demo runs on one thread.

Gradio runs each request in its own thread; if each called torch, N requests would start N
OpenMP teams on 2 cores, and a team whose threads get preempted waits in barriers (a 2-thread
forward measured up to 20x slower than a 1-thread one on an oversubscribed machine). So every
torch call is queued to one thread, which also owns the intra-op thread count
(``torch.set_num_threads`` is per-thread state under OpenMP).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TypeVar

import torch

from .threads import ThreadPolicy

T = TypeVar("T")

class InferenceWorker:
    """Runs callables one at a time on one dedicated thread, in arrival order.

    ``threaded=False`` runs them in the caller instead: on ZeroGPU each ``@spaces.GPU``
    call runs in a forked process, where a thread started by the parent does not exist.
    """

    def __init__(self, policy: ThreadPolicy, threaded: bool = True) -> None:
        self.policy = policy
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dcgan-inference") if threaded else None

    def run(self, fn: Callable[..., T], *args: Any, batch: int = 1) -> T:
        """``fn(*args)`` on the worker with the policy's thread count for ``batch`` images."""
        threads = self.policy.threads_for(batch)
        if self._executor is None:
            return _with_threads(threads, fn, args)
        return self._executor.submit(_with_threads, threads, fn, args).result()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)


def _with_threads(threads: int, fn: Callable[..., T], args: tuple) -> T:
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return fn(*args)
