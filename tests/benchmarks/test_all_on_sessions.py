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
    rows = all_on_sessions.run(batch=2, rounds=1, calls=2, after=2, seed=0, idle_ms=5.0)
    assert [row["setting"] for row in rows] == list(all_on_sessions.SETTINGS)
    for row in rows:
        assert row["dense_ms"] > 0 and len(row["kernels_after_ms"]) == 2
        assert row["idle_ms"] == 5.0 and row["idle_cpu_ms"] >= 0


def test_a_negative_idle_spell_is_refused(capsys):
    with pytest.raises(SystemExit):
        all_on_sessions.main(["--idle-ms", "-1"])
    assert "--idle-ms must be >= 0" in capsys.readouterr().err


def test_idle_cpu_counts_a_busy_thread_and_not_a_sleeping_one():
    """A thread that keeps a core busy through the sleep shows in the process's CPU time; a
    run that leaves nothing behind does not (tolerance: half the 50 ms spell either way)."""
    import threading
    import time

    assert all_on_sessions.idle_cpu_ms(lambda: None, 0.05) < 25.0
    stop = time.perf_counter() + 0.06

    def busy() -> None:
        while time.perf_counter() < stop:
            pass

    def start_busy() -> None:
        threading.Thread(target=busy, daemon=True).start()

    assert all_on_sessions.idle_cpu_ms(start_busy, 0.05) > 25.0
