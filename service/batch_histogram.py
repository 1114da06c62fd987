"""A Prometheus histogram that takes a whole batch of observations in a few numpy calls.

prometheus_client's Histogram takes one value per call, under a lock, in Python: a request of a
thousand examples observed per example makes thousands of such calls on the event loop. This
one counts a batch with one `searchsorted` and one `bincount` (a few values one by one, where
numpy's cost per call is more than the work) and is exposed in the same text format (the
`_bucket`, `_count` and `_sum` samples, plus `_created` per label set as prometheus_client
writes it)."""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

# Up to this many values per call are counted in Python: a lone example's request, say.
FEW = 4


@dataclass
class _Series:
    """One label value's counts per bucket (the last one +Inf; not cumulative) and sum."""

    buckets: int
    counts: np.ndarray = field(init=False)
    total: float = 0.0
    created: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        self.counts = np.zeros(self.buckets, dtype=np.int64)


class BatchHistogram:
    """Histogram with one label, observed a batch at a time: `observe_many(label, values)`."""

    def __init__(self, name: str, documentation: str, label: str, buckets: Sequence[float],
                 registry: CollectorRegistry) -> None:
        bounds = [float(b) for b in buckets]
        if bounds != sorted(set(bounds)) or not bounds:
            raise ValueError(f"buckets must be increasing, got {buckets}")
        self.name, self.documentation, self.label = name, documentation, label
        self.bounds = np.array(bounds)
        self._bounds = bounds  # as a list too: bisect over a list beats numpy on a few values
        self._edges = [floatToGoString(b) for b in bounds] + ["+Inf"]  # the `le` labels
        self._lock = threading.Lock()
        self._series: dict[str, _Series] = {}
        registry.register(self)

    def observe_many(self, value: str, values: Sequence[float] | np.ndarray) -> None:
        """Count each of `values` in its bucket: the first whose bound is >= it, as
        prometheus_client does. A few values are counted one by one in Python, where numpy's
        cost per call would exceed the work; more, in numpy."""
        few = len(values) <= FEW
        if few:
            values = values.tolist() if isinstance(values, np.ndarray) else list(values)
            added = [bisect.bisect_left(self._bounds, v) for v in values]  # bucket per value
            total = sum(values)
        else:
            array = np.asarray(values, dtype=np.float64).reshape(-1)
            added = np.bincount(np.searchsorted(self.bounds, array, side="left"),
                                minlength=self.bounds.size + 1)  # count per bucket
            total = float(array.sum())
        with self._lock:
            series = self._series.get(value)
            if series is None:
                series = self._series[value] = _Series(self.bounds.size + 1)
            if few:
                for index in added:
                    series.counts[index] += 1
            else:
                series.counts += added
            series.total += total

    def describe(self) -> list:
        return []  # collected lazily; no name clash check needed beyond the registry's

    def collect(self) -> Iterator:
        family = HistogramMetricFamily(self.name, self.documentation, labels=[self.label])
        created = GaugeMetricFamily(f"{self.name}_created", self.documentation,
                                    labels=[self.label])
        with self._lock:
            snapshot = [(value, series.counts.copy(), series.total, series.created)
                        for value, series in self._series.items()]
        for value, counts, total, when in snapshot:
            cumulative = np.cumsum(counts).tolist()
            family.add_metric([value], list(zip(self._edges, cumulative, strict=True)), total)
            created.add_metric([value], when)
        yield family
        yield created
