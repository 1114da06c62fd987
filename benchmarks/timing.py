"""Timing helpers shared by the benchmarks: medians of many calls after warm-up, in rounds.

This project's machines are shared and noisy, so every figure is a median, and the functions
compared in one row are timed in alternating rounds (dense, skip, dense, skip, ...) so that a
burst of load elsewhere lands on both rather than on one. Within a round each function runs
`repeats // rounds` times back to back, so caches and thread pools see it the way a server
that keeps calling it would.

A function that cannot be timed by a clock around the call, because it runs in another process
(the pipe to it would be on the clock) or needs a setting changed around its calls and not
during anyone else's, times itself: it is a `SelfTimed`, and joins the rounds the same way.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable


@runtime_checkable
class SelfTimed(Protocol):
    def timed_calls(self, count: int) -> list[float]:
        """Make `count` calls back to back; the milliseconds of each."""


Timed = Callable[[], object] | SelfTimed


def clock_calls(fn: Callable[[], object], count: int,
                setup: Callable[[], object] | None = None,
                sync: Callable[[], object] | None = None) -> list[float]:
    """`count` calls of fn back to back, the milliseconds of each; `setup` runs before each
    call off the clock, `sync` before each clock read."""
    setup, sync, out = setup or _nothing, sync or _nothing, []
    for _ in range(count):
        setup()
        sync()
        start = time.perf_counter()
        fn()
        sync()
        out.append((time.perf_counter() - start) * 1e3)
    return out


def median_ms(functions: dict[str, Timed], *, warmup: int, repeats: int,
              rounds: int = 3, synchronize: Callable[[], None] | None = None,
              before: dict[str, Callable[[], object]] | None = None,
              settle_s: float = 0.0) -> dict[str, float]:
    """Median milliseconds per call of each function. `synchronize` (e.g.
    torch.cuda.synchronize) runs before each clock read, so device work is inside the timing.
    `before[name]`, where given, runs before each call of that function, off the clock (a
    pause, say, that the call should follow). With `settle_s`, each function's round starts,
    off the clock, with calls to it for that long (one at least): the previous function's
    worker threads, still spinning for a while after its last call (torch's OpenMP workers,
    onnxruntime's, OpenBLAS's), have parked, and the round times this function's calls back to
    back, as a server busy with it would run them. The cores are kept busy meanwhile rather
    than left idle: a core that idled runs the next calls slower for a while (see
    `benchmarks.forward_after_pause`), which would time each round's start, not the steady
    state the rounds are for."""
    setups = before or {}
    if any(isinstance(functions[name], SelfTimed) for name in setups):
        raise ValueError("a SelfTimed function times its own calls: it takes no `before`")

    def calls(name: str, count: int) -> list[float]:
        fn = functions[name]
        if isinstance(fn, SelfTimed):
            return fn.timed_calls(count)
        return clock_calls(fn, count, setups.get(name), synchronize)

    for name in functions:
        calls(name, warmup)
    samples: dict[str, list[float]] = {name: [] for name in functions}
    per_round = max(1, repeats // max(1, rounds))
    for _ in range(max(1, rounds)):
        for name in functions:
            if settle_s > 0:
                until = time.perf_counter() + settle_s
                while True:
                    calls(name, 1)
                    if time.perf_counter() >= until:
                        break
            samples[name] += calls(name, per_round)
    return {name: statistics.median(values) for name, values in samples.items()}


def _nothing() -> None:
    pass
