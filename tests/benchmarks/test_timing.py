"""benchmarks.timing: each function's calls are timed in alternating rounds, and with
`settle_s` each round starts with a pause and one call, both off the clock."""

import time

from benchmarks.timing import median_ms


def test_rounds_alternate_and_settling_adds_an_untimed_call_after_a_pause():
    calls: list[tuple[str, float]] = []

    def recorder(name):
        return lambda: calls.append((name, time.perf_counter()))

    median_ms({"a": recorder("a"), "b": recorder("b")}, warmup=1, repeats=4, rounds=2,
              settle_s=0.02)
    names = "".join(name for name, _ in calls)
    # warm-up a, b; then per round: a settling call + 2 timed, b the same
    assert names == "ab" + ("aaa" + "bbb") * 2
    starts = range(2, len(calls), 3)  # each round's settling call
    for i in starts:
        assert calls[i][1] - calls[i - 1][1] >= 0.02  # the pause came before it


def test_without_settling_there_is_no_extra_call():
    calls = []
    median_ms({"a": lambda: calls.append(1)}, warmup=0, repeats=6, rounds=3)
    assert len(calls) == 6
