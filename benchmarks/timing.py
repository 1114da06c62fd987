"""Timing helpers shared by the benchmarks: medians of many calls after warm-up, in rounds.

This project's machines are shared and noisy, so every figure is a median, and the functions
compared in one row are timed in alternating rounds (dense, skip, dense, skip, ...) so that a
burst of load elsewhere lands on both rather than on one. Within a round each function runs
`repeats // rounds` times back to back, so caches and thread pools see it the way a server
that keeps calling it would.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_ms(functions: dict[str, Callable[[], object]], *, warmup: int, repeats: int,
              rounds: int = 3, synchronize: Callable[[], None] | None = None,
              before: dict[str, Callable[[], object]] | None = None,
              settle_s: float = 0.0) -> dict[str, float]:
    """Median milliseconds per call of each function. `synchronize` (e.g.
    torch.cuda.synchronize) runs before each clock read, so device work is inside the timing.
    `before[name]`, where given, runs before each call of that function, off the clock (a
    pause, say, that the call should follow). With `settle_s`, each function's round starts,
    off the clock, with a pause that long and one call: the previous function's worker
    threads, still spinning for a few milliseconds after its last call (torch's OpenMP
    workers, onnxruntime's), have parked, and the round times this function's calls back to
    back, as a server busy with it would run them."""
    sync = synchronize or (lambda: None)
    setups = before or {}
    for name, fn in functions.items():
        for _ in range(warmup):
            setups.get(name, _nothing)()
            fn()
    sync()
    samples: dict[str, list[float]] = {name: [] for name in functions}
    per_round = max(1, repeats // max(1, rounds))
    for _ in range(max(1, rounds)):
        for name, fn in functions.items():
            if settle_s > 0:
                time.sleep(settle_s)
                setups.get(name, _nothing)()
                fn()
                sync()
            for _ in range(per_round):
                setups.get(name, _nothing)()
                sync()
                start = time.perf_counter()
                fn()
                sync()
                samples[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(values) for name, values in samples.items()}


def _nothing() -> None:
    pass
