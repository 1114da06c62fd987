"""The large-requests benchmark's command line and its one row per limit (no server run)."""

from __future__ import annotations

import pytest

from benchmarks import hostile_bodies, large_requests


def test_a_body_limit_too_small_for_the_largest_request_is_refused_by_name():
    with pytest.raises(SystemExit, match="1024 full examples do not fit a body of 4096 bytes"):
        large_requests.largest_valid(4096, 1024)
    assert len(large_requests.largest_valid(8 * 1024 * 1024, 1024).body) < 8 * 1024 * 1024


@pytest.mark.parametrize("argv", [["--limits", "0,64"], ["--runs", "0"]])
def test_limits_and_runs_must_be_positive(argv, capsys):
    with pytest.raises(SystemExit):
        large_requests.main(argv)
    assert "must be positive" in capsys.readouterr().err


def test_the_table_gives_each_limit_its_range_over_the_runs(capsys):
    rows = [{"max_forward_examples": limit, "alone_large_per_s": rate, "shared_large_per_s": 1.0,
             "shared_small_p50_ms": p50, "shared_small_p50_ratio": p50 / 2,
             "shared_small_p99_ms": 9.0, "refused": {}}
            for limit, rate, p50 in ((1024, 30.0, 18.0), (64, 25.0, 2.0), (1024, 32.0, 19.0))]
    large_requests.show(rows)
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["1024", "30.0-32.0", "1.0", "18.0-19.0", "9.00-9.50", "9.0"]
    assert lines[2].split() == ["64", "25.0", "1.0", "2.0", "1.00", "9.0"]


def test_hostile_bodies_refuses_a_phase_it_does_not_have(capsys):
    with pytest.raises(SystemExit, match="no attack named 'largest'"):
        hostile_bodies.main(["--phases", "largest"])
