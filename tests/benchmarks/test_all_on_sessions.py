"""The all-on sessions benchmark: its command line, and one tiny round of every setting."""

from __future__ import annotations

import pytest

from benchmarks import all_on_sessions


@pytest.mark.parametrize("flag", ["--batch", "--rounds", "--calls", "--after"])
def test_counts_below_one_are_refused(flag, capsys):
    with pytest.raises(SystemExit):
        all_on_sessions.main([flag, "0"])
    assert "must be at least 1" in capsys.readouterr().err


def test_one_round_times_every_setting_and_the_kernels_after_it():
    pytest.importorskip("onnxruntime")
    rows = all_on_sessions.run(batch=2, rounds=1, calls=2, after=2, seed=0)
    assert [row["setting"] for row in rows] == list(all_on_sessions.SETTINGS)
    for row in rows:
        assert row["dense_ms"] > 0 and len(row["kernels_after_ms"]) == 2
