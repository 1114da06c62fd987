"""The last minute of each model's traffic, for a live view: requests per second, latency
percentiles and the mean saving, as `GET /v1/metrics/summary` reports them.

Prometheus' histograms (`service.metrics`) count since start-up in fixed buckets, which
a scraper turns into rates and quantiles; a person watching a page has no scraper. So each
inference request is also kept here, with its latency and its examples' saving, for
WINDOW_S seconds and at most MAX_REQUESTS per model: the memory stays bounded at any load,
and a summary sorts at most that many latencies.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

WINDOW_S = 60.0
MAX_REQUESTS = 10_000
PERCENTILES = (50, 90, 99)


@dataclass(frozen=True)
class _Request:
    at: float  # monotonic seconds
    seconds: float
    saved_sum: float  # its examples' saved fractions, summed
    examples: int


class RecentTraffic:
    def __init__(self, window_s: float = WINDOW_S, max_requests: int = MAX_REQUESTS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s, self.max_requests, self.clock = window_s, max_requests, clock
        self.started = clock()
        self._requests: dict[str, deque[_Request]] = {}

    def record(self, model: str, seconds: float, saved_sum: float, examples: int) -> None:
        """One request: its latency, and its examples' saved fractions summed."""
        kept = self._requests.setdefault(model, deque(maxlen=self.max_requests))
        kept.append(_Request(self.clock(), seconds, saved_sum, examples))

    def summary(self, models: Iterable[str]) -> list[dict[str, object]]:
        """One entry per model in `models` (the loaded ones) or with requests in the window."""
        now = self.clock()
        for name in list(self._requests):
            kept = self._requests[name]
            while kept and kept[0].at < now - self.window_s:
                kept.popleft()
            if not kept:
                del self._requests[name]
        names = sorted(set(models) | set(self._requests))
        return [self._model(name, self._requests.get(name, ()), now) for name in names]

    def _model(self, name: str, kept: Iterable[_Request], now: float) -> dict[str, object]:
        kept = list(kept)
        examples = sum(r.examples for r in kept)
        # Over the window, or the time since start-up where that is shorter; where more
        # requests came than are kept, over the time the kept ones span.
        span = min(self.window_s, now - self.started)
        if len(kept) == self.max_requests:
            span = now - kept[0].at
        latency = None
        if kept:
            ms = np.array([r.seconds for r in kept]) * 1e3
            p50, p90, p99 = np.percentile(ms, PERCENTILES).tolist()
            latency = {"p50": p50, "p90": p90, "p99": p99, "mean": float(ms.mean())}
        return {"name": name, "requests": len(kept), "examples": examples,
                "requests_per_second": len(kept) / span if span > 0 else 0.0,
                "latency_ms": latency,
                "mean_saved_fraction": (sum(r.saved_sum for r in kept) / examples
                                        if examples else None)}
