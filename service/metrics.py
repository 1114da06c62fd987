"""Prometheus metrics, one registry per app (so tests can build many apps in one process).

Per model: request latency, time queued, examples per forward, the fraction of blocks on and
the fraction of multiply-adds saved per example; per route and status: errors. The last
minute of each model's requests is also kept for a live summary (`service.recent_traffic`).
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from models.compute import ComputeReports

from .batch_histogram import FEW, BatchHistogram
from .recent_traffic import RecentTraffic

# Latency buckets from 0.5 ms: a small model's forward takes well under a millisecond.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
FRACTION_BUCKETS = tuple(i / 20 for i in range(21))  # 0, 0.05, ..., 1
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.latency = Histogram("sparsegate_request_seconds", "Inference request latency in "
                                 "the server, from arrival to response", ["model", "api"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.queue = Histogram("sparsegate_queue_seconds", "Time a request waited for its "
                               "forward", ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("sparsegate_batch_size", "Examples per forward (dynamic "
                                    "batching)", ["model"], buckets=BATCH_BUCKETS, registry=r)
        # Per example: observed a request's batch at a time (a request may hold 1024).
        self.active_fraction = BatchHistogram("sparsegate_active_block_fraction", "Fraction "
                                              "of blocks on per example, over all gated "
                                              "layers", "model", FRACTION_BUCKETS, r)
        self.saved_fraction = BatchHistogram("sparsegate_saved_fraction", "Fraction of the "
                                             "dense multiply-adds not run, per example",
                                             "model", FRACTION_BUCKETS, r)
        self.examples = Counter("sparsegate_examples", "Examples inferred", ["model"],
                                registry=r)
        self.errors = Counter("sparsegate_errors", "Requests answered with an error",
                              ["route", "status"], registry=r)
        self.loaded = Gauge("sparsegate_model_versions_loaded", "Model versions being served",
                            registry=r)
        self.recent = RecentTraffic()
        # Each (model, api)'s labelled children, looked up once: prometheus_client's
        # `labels` costs a few microseconds a call, three calls a request.
        self._per_request: dict[tuple[str, str], tuple] = {}

    def batch_observer(self, model: str) -> Callable[[int], None]:
        return self.batch_size.labels(model).observe

    def observe_request(self, model: str, api: str, seconds: float, queue_seconds: float,
                        reports: ComputeReports) -> None:
        children = self._per_request.get((model, api))
        if children is None:
            children = self._per_request[model, api] = (
                self.latency.labels(model, api), self.queue.labels(model),
                self.examples.labels(model))
        latency, queue, examples = children
        latency.observe(seconds)
        queue.observe(queue_seconds)
        examples.inc(len(reports))
        # Below 0 (the first bucket) where the gater cost more than the blocks skipped. A
        # request's few examples in Python floats, cheaper than numpy's calls; many in numpy.
        if len(reports) <= FEW:
            dense = reports.dense_macs
            saved = [1.0 - e / dense for e in reports.executed_macs.tolist()]
            saved_sum = sum(saved)
            if reports.blocks:
                total = sum(reports.blocks)
                active = [sum(row) / total for row in reports.active_blocks.tolist()]
        else:
            saved = reports.saved_fractions()
            saved_sum = float(saved.sum())
            active = reports.active_fractions()
        if reports.blocks:
            self.active_fraction.observe_many(model, active)
        self.saved_fraction.observe_many(model, saved)
        self.recent.record(model, seconds, saved_sum, len(reports))

    def observe_error(self, route: str, status: int) -> None:
        self.errors.labels(route, str(status)).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
