"""The pause benchmark times each forward off the pause's clock, per batch and variant; and the
shared timing helper runs a `before` hook untimed, before every call of its function."""

import time

from benchmarks.forward_after_pause import VARIANTS, rows
from benchmarks.timing import median_ms


def test_before_runs_before_every_call_and_off_the_clock():
    calls = []
    times = median_ms({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                      warmup=1, repeats=4, rounds=2,
                      before={"b": lambda: (calls.append("pause"), time.sleep(0.02))})
    assert calls.count("a") == calls.count("b") == calls.count("pause") == 5
    assert all(calls[i - 1] == "pause" for i, c in enumerate(calls) if c == "b")
    assert times["b"] < 10  # the 20 ms sleeps are not in it


def test_a_row_per_batch_with_every_variant_timed():
    out = rows(warmup=1, repeats=2, rounds=1, seed=0, density=0.1, pause_ms=0.1,
               batches=(1, 2))
    assert [r["batch"] for r in out] == [1, 2]
    for r in out:
        assert all(r[f"{v}_ms"] > 0 for v in VARIANTS)
        assert r["pause_cost"] > 0 and r["expected_pause_cost"] > 0
