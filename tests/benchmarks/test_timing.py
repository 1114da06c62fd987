"""benchmarks.timing: each function's calls are timed in alternating rounds; with `settle_s`
each round starts with calls to that function for that long, off the clock; a SelfTimed
function joins the rounds with the times it reports."""

import time

import pytest

from benchmarks.timing import median_ms


def test_rounds_alternate_and_settling_calls_the_function_off_the_clock_first():
    calls: list[tuple[str, float]] = []

    def recorder(name):
        def call():
            calls.append((name, time.perf_counter()))
            time.sleep(0.004)
        return call

    median_ms({"a": recorder("a"), "b": recorder("b")}, warmup=1, repeats=4, rounds=2,
              settle_s=0.02)
    assert [name for name, _ in calls[:2]] == ["a", "b"]  # warm-up
    runs: list[list[float]] = []  # each function's round: the start of each of its calls
    for name, start in calls[2:]:
        if not runs or runs[-1][0] != name:
            runs.append([name])
        runs[-1].append(start)
    assert [run[0] for run in runs] == ["a", "b", "a", "b"]
    for _, *starts in runs:
        settling, timed = starts[:-2], starts[-2:]
        assert len(settling) >= 2  # calls kept coming for the settling time, 4 ms each
        # the last settling call started before the time was up, the first timed one after
        assert timed[0] - settling[0] >= 0.02 > settling[-1] - settling[0]


def test_without_settling_there_is_no_extra_call():
    calls = []
    median_ms({"a": lambda: calls.append(1)}, warmup=0, repeats=6, rounds=3)
    assert len(calls) == 6


class Recorded:
    """A SelfTimed that records its calls and reports a fixed time for each."""

    def __init__(self, calls: list[str], name: str, ms: float) -> None:
        self.calls, self.name, self.ms = calls, name, ms

    def timed_calls(self, count: int) -> list[float]:
        self.calls += [self.name] * count
        return [self.ms] * count


def test_a_self_timed_function_joins_the_rounds_and_its_own_times_are_taken():
    calls: list[str] = []
    times = median_ms({"a": lambda: calls.append("a"), "s": Recorded(calls, "s", 7.5)},
                      warmup=1, repeats=4, rounds=2)
    assert "".join(calls) == "as" + ("aa" + "ss") * 2
    assert times["s"] == 7.5  # its own report, not a clock around it


def test_a_self_timed_function_settles_through_its_own_calls():
    calls: list[str] = []
    median_ms({"s": Recorded(calls, "s", 1.0)}, warmup=0, repeats=1, rounds=1,
              settle_s=0.001)
    assert len(calls) >= 2  # at least one settling call, then the timed one


def test_a_self_timed_function_takes_no_setup():
    with pytest.raises(ValueError, match="SelfTimed"):
        median_ms({"s": Recorded([], "s", 1.0)}, warmup=0, repeats=1,
                  before={"s": lambda: None})
