"""Stopping a run cleanly: SIGINT/SIGTERM (and the collapse watchdog) ask; the loop obeys
after the current step, checkpointing first when a signal asked."""

from __future__ import annotations

import contextlib
import logging
import signal
from typing import Any, Iterator


log = logging.getLogger(__name__)


class StopRequest:
    """SIGINT/SIGTERM set a flag; the loop checkpoints after the current step and exits.

    The collapse watchdog sets ``reason`` instead: the loop ends at the epoch's end without
    checkpointing it (the run is not "interrupted": there is nothing to resume for).
    """

    def __init__(self) -> None:
        self.signal: int | None = None
        self.reason: str | None = None

    def __bool__(self) -> bool:
        return self.signal is not None or self.reason is not None

    @property
    def by_signal(self) -> bool:
        return self.signal is not None

    @contextlib.contextmanager
    def installed(self) -> Iterator["StopRequest"]:
        def handler(signum: int, _frame: Any) -> None:
            if self.signal is not None:  # a second Ctrl-C: stop now
                raise KeyboardInterrupt
            self.signal = signum
            log.warning("got %s: saving a checkpoint after this step", signal.Signals(signum).name)

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)
