"""How long each ZeroGPU call may hold the GPU, sized per call.

On a ZeroGPU Space ``@spaces.GPU(duration=…)`` is checked against the visitor's remaining
quota before the call starts, and shorter calls are scheduled first. A flat worst case (60 s
for every Training-tab call) turns away visitors with less quota left although most calls
need a tenth of it, so :func:`durations` gives ``spaces.GPU`` a callable per kind of call: it
receives the call's own (already validated) arguments and returns seconds.

The numbers: each call's worst case measured on the 2-vCPU CPU box (bench/RESULTS.md §9: a
grid 0.2 s, a walk 0.65 s, a projection 3.1 s, a training grid 2.9 s; §13: an edit, the
largest arithmetic or a 30-frame sweep ≤ 1.4 s, a completion stops at 4.5 s like a
projection), ×3 and at least 10 s for a fresh ZeroGPU process to start CUDA. The Training
tab's generators are loaded on demand (a Space downloads each revision once): each one that
is not in memory adds :data:`LOAD_S`.
"""

from __future__ import annotations

from typing import Any, Callable

START_S = 10  # the floor: a fresh ZeroGPU process starts CUDA and moves the model first
SEARCH_S = 15  # a projection or completion: an optimiser search that stops at 4.5 s on the CPU
LOAD_S = 2  # one training revision not in memory: read (downloaded first on a Space) and loaded
MAX_S = 120  # what a logged-in visitor's quota allows in one call

Duration = Callable[..., int]


def _bounded(seconds: float) -> int:
    return int(min(MAX_S, max(START_S, round(seconds))))


def training_grid_seconds(history: Any, epoch: int, *_: Any) -> int:
    """A grid at one epoch: the start, plus a load when that epoch's generator is not in memory."""
    try:
        revision = history.at_epoch(epoch or history.epochs[-1])
    except (ValueError, IndexError, KeyError):  # the call itself reports a bad epoch
        return START_S + LOAD_S
    return _bounded(START_S + (0 if revision in history.cache else LOAD_S))


def training_walk_seconds(history: Any, revisions: Callable[[Any], list[Any]]) -> int:
    """One seed across the epochs ``revisions(history)`` picks: a load for each one not in memory."""
    missing = sum(revision not in history.cache for revision in revisions(history))
    return _bounded(START_S + LOAD_S * missing)


def durations(history: Any = None, walk_revisions: Callable[[Any], list[Any]] | None = None) -> dict[str, Duration]:
    """kind of call → ``spaces.GPU``'s duration: a callable taking the call's arguments.

    ``history`` is the served model's training history (None: no Training tab) and
    ``walk_revisions`` picks the revisions a Training-tab GIF draws."""
    flat = {"generate": START_S, "interpolate": START_S, "edit": START_S, "project": SEARCH_S, "complete": SEARCH_S}
    if history is None or walk_revisions is None:  # no Training tab: its calls refuse at once
        flat.update(training_grid=START_S, training_walk=START_S)
    table: dict[str, Duration] = {kind: (lambda *args, _s=seconds, **kwargs: _s) for kind, seconds in flat.items()}
    if history is not None and walk_revisions is not None:
        table["training_grid"] = lambda epoch, *args, **kwargs: training_grid_seconds(history, epoch)
        table["training_walk"] = lambda *args, **kwargs: training_walk_seconds(history, walk_revisions)
    return table
