"""The sweep's outputs and the server-side timing summary, from hand-made rows."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from loadtest import report
from loadtest.data import examples
from loadtest.server_timings import ServerTimings


def rows():
    out = []
    for density in (1.0, 0.1):
        for mode, users in (("users", 1), ("users", 8), ("rate", 4)):
            out.append({"density": density, "model": f"m-d{round(100 * density)}",
                        "mode": mode, "users": users,
                        "offered_rate": 20.0 if mode == "rate" else None, "requests": 100,
                        "failures": 0, "requests_per_s": 50 / density, "p50_ms": 10 * density,
                        "p95_ms": 20 * density, "p99_ms": 30 * density,
                        "server_total_ms_p50": 5 * density, "server_total_ms_p99": 9 * density,
                        "server_compute_ms_p50": 4 * density, "server_mean_batch_size": 1.5,
                        "server_saved_fraction": 1 - density})
    return out


def test_tables_plot_and_markdown(tmp_path):
    csv_path, json_path = report.write_tables(rows(), tmp_path, {"seconds": 5.0})
    with csv_path.open() as f:
        assert len(list(csv.DictReader(f))) == 6
    assert json.loads(json_path.read_text())["seconds"] == 5.0
    assert report.plot(rows(), tmp_path / "p.png").stat().st_size > 10_000
    text = report.markdown(rows(), {"seconds": 5.0, "machine": "m"}, "p.png")
    assert "| 10 % | 8 users | 500.0 | 0 | 1.00 |" in text
    assert "20 req/s (4 users)" in text and "90.0 %" in text


def test_update_file_keeps_the_prose_around_the_markers(tmp_path):
    path = tmp_path / "doc.md"
    report.update_file(path, "first\n")
    path.write_text("# Title\n\nintro\n\n" + path.read_text() + "\nafter\n")
    report.update_file(path, "second\n")
    text = path.read_text()
    assert text.startswith("# Title\n\nintro\n") and text.rstrip().endswith("after")
    assert "second" in text and "first" not in text


def test_timings_summarise_client_and_server_exactly():
    timings = ServerTimings()
    for i in range(100):
        timings.record_client(i + 0.25, failed=False)
        timings.record("v1", {"timings": {"total_ms": i + 0.5, "queue_ms": 0.5,
                                          "compute_ms": 1.0, "batch_size": 2},
                              "predictions": [{"compute": {"saved_fraction": 0.5}},
                                              {"compute": {"saved_fraction": 0.7}}]})
    timings.record_client(500.0, failed=True)
    timings.record("v2", {"parameters": {"total_ms": 1.0, "queue_ms": 0.0, "compute_ms": 0.5,
                                         "batch_size": 1, "saved_fraction": 0.9}})
    shipped = timings.drain()  # a worker's report to the master
    assert timings.summary() == {"requests": 0, "failures": 0, "server_requests": 0}
    timings.extend(shipped)
    summary = timings.summary(seconds=10.0)
    assert (summary["requests"], summary["failures"], summary["server_requests"]) == (101, 1,
                                                                                     101)
    assert summary["requests_per_s"] == 10.0  # successful requests only
    # Not rounded to whole milliseconds, and the failed request's time left out.
    assert summary["p50_ms"] == pytest.approx(np.percentile([i + 0.25 for i in range(100)], 50))
    assert summary["server_total_ms_p50"] == pytest.approx(np.percentile(
        [i + 0.5 for i in range(100)] + [1.0], 50))
    assert summary["server_saved_fraction"] == pytest.approx((100 * 0.6 + 0.9) / 101)


def test_examples_follow_the_input_size():
    digits, source = examples(64, 10)
    assert digits.shape == (10, 64) and digits.min() >= 0 and digits.max() <= 1
    assert "digits" in source
    other, source = examples(5, 3)
    assert other.shape == (3, 5) and "uniform" in source
