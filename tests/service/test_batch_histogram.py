"""The batch histogram counts as prometheus_client's Histogram does, value for value: the same
bucket and count lines in the exposition, values on bucket edges, below the first and past the
last included; sums agree to rounding (summed in another order)."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from service.batch_histogram import FEW, BatchHistogram
from service.metrics import FRACTION_BUCKETS


def exposition(registry: CollectorRegistry) -> dict[str, float]:
    samples = {}
    for line in generate_latest(registry).decode().splitlines():
        if line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        samples[name] = float(value)
    return samples


def test_batches_count_as_one_value_at_a_time_does():
    rng = np.random.default_rng(0)
    edges = np.array(FRACTION_BUCKETS)
    batches = [rng.uniform(-0.5, 1.5, size=n) for n in (1, 3, 7, 1024)]  # both ways of counting
    batches.append(edges[1:FEW + 1].tolist())  # a list on the bounds, as the server passes a few
    batches.append(np.concatenate([edges, np.nextafter(edges, 2), np.nextafter(edges, -2)]))
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    histogram = Histogram("frac", "doc", ["model"], buckets=FRACTION_BUCKETS, registry=theirs)
    batched = BatchHistogram("frac", "doc", "model", FRACTION_BUCKETS, ours)
    for i, values in enumerate(batches):
        model = f"m{i % 2}"
        for value in np.asarray(values, dtype=float).tolist():
            histogram.labels(model).observe(value)
        batched.observe_many(model, values)
    want, got = exposition(theirs), exposition(ours)
    assert want.keys() == got.keys()
    for name, value in want.items():
        if name.startswith("frac_created"):
            continue
        if name.startswith("frac_sum"):
            assert got[name] == pytest.approx(value, rel=1e-12)
        else:
            assert got[name] == value, name


def test_buckets_must_increase():
    with pytest.raises(ValueError, match="increasing"):
        BatchHistogram("bad", "doc", "model", (0.5, 0.1), CollectorRegistry())
