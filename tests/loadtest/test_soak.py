"""The soak: its verdicts from synthetic series (they can fail), and a short run end to end
against a real server (CI's version of issue 7's ten-minute run)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from loadtest import soak
from loadtest.cli import main
from models.gated_artifact import save_gated_network
from tests.service.conftest import Server, tiny_network

PLAN = soak.Plan(users=8, seconds=60, warmup_s=10, window_s=10, sample_s=1)
MIB = soak.MIB


def requests(seconds=60, per_second=100, slowdown=1.0, failed_at=()):
    """Rows (sent s, ms, failed): the same spread of latencies (1 to 10 ms) every second,
    times `slowdown` in the last 10 s; failures at the given seconds."""
    rows = []
    for second in range(seconds):
        scale = slowdown if second >= seconds - 10 else 1.0
        for i, ms in enumerate(np.linspace(1.0, 10.0, per_second)):
            rows.append((second + i / per_second, ms * scale,
                         float(second in failed_at and i == 0)))
    return np.array(rows)


def memory(growth_per_s=0.0, seconds=60):
    """(s, RSS bytes) every second: 200 MiB (more before the warm-up ends, as a server
    allocating its first batches), then growing by `growth_per_s` of that each second."""
    return [(float(t), int(200 * MIB * (1 + growth_per_s * max(0, t - 10)) + (t < 10) * MIB))
            for t in range(seconds + 1)]


def test_a_steady_run_passes():
    result = soak.analyse(requests(), memory(), PLAN)
    assert result["passed"] and all(v["passed"] for v in result["verdicts"].values())
    assert result["verdicts"]["rss_growth"]["value"] == pytest.approx(0.0)
    assert result["verdicts"]["p99_ratio"]["value"] == pytest.approx(1.0)
    assert result["totals"]["requests"] == 6000 and result["totals"]["failures"] == 0


def test_memory_growing_after_the_warmup_fails():
    result = soak.analyse(requests(), memory(growth_per_s=0.003), PLAN)  # +15 % in 50 s
    check = result["verdicts"]["rss_growth"]
    assert not check["passed"] and not result["passed"]
    assert check["value"] == pytest.approx(0.15, rel=1e-3)
    assert result["memory"]["slope_mib_per_min"] == pytest.approx(0.003 * 200 * 60, rel=1e-3)
    assert soak.analyse(requests(), memory(growth_per_s=0.001), PLAN)["passed"]  # +5 %


def test_growth_is_counted_from_the_end_of_the_warmup():
    # The first seconds' allocations (1 MiB more here, then freed) are not growth.
    samples = [(t, 100 * MIB if t < 10 else 150 * MIB) for t, _ in memory()]
    figures = soak.memory_growth(samples, warmup_s=10)
    assert figures["warmup_rss"] == 150 * MIB and figures["growth"] == 0.0
    assert soak.memory_growth(samples, warmup_s=100)["growth"] is None


def test_p99_rising_by_30_percent_fails_and_by_10_passes():
    slower = soak.analyse(requests(slowdown=1.3), memory(), PLAN)
    assert slower["latency"]["p99_ratio"] == pytest.approx(1.3)
    assert slower["latency"]["p50_ratio"] == pytest.approx(1.3)
    assert not slower["verdicts"]["p99_ratio"]["passed"] and not slower["passed"]
    assert soak.analyse(requests(slowdown=1.1), memory(), PLAN)["passed"]


def test_one_failed_request_fails():
    result = soak.analyse(requests(failed_at=(30,)), memory(), PLAN)
    assert result["verdicts"]["failures"] == {"value": 1, "limit": 0, "passed": False}
    assert not result["passed"]


def test_memory_not_measured_is_skipped_not_failed():
    result = soak.analyse(requests(), None, PLAN)
    assert result["memory"] is None and result["verdicts"]["rss_growth"]["passed"] is None
    assert result["passed"]
    # Measured but with no sample after the warm-up: that is a failure.
    early = soak.analyse(requests(), [(1.0, 100 * MIB)], PLAN)
    assert early["verdicts"]["rss_growth"]["passed"] is False


def test_windows_cover_every_request_and_absorb_a_stub():
    rows = requests(seconds=60)
    rows = np.vstack([rows, [[60.3, 5.0, 0.0]]])  # a request sent just past the planned end
    per_window = soak.windows(rows, 10)
    assert [w["start_s"] for w in per_window] == [0, 10, 20, 30, 40, 50]
    assert sum(w["requests"] for w in per_window) == len(rows)
    assert per_window[-1]["end_s"] == pytest.approx(60.3)
    # Exact percentiles (locust's own are rounded to whole milliseconds).
    assert per_window[0]["p50_ms"] == pytest.approx(np.percentile(np.linspace(1, 10, 100), 50))


def test_plans_that_cannot_give_verdicts_are_refused():
    assert soak.Plan().problems() == []
    assert soak.Plan(seconds=60, warmup_s=60).problems()
    assert soak.Plan(seconds=100, window_s=60).problems()


def test_request_times_become_relative_to_the_first():
    rows, t0 = soak.relative_requests(np.array([[1000.5, 3.0, 0], [1000.0, 4.0, 0]]))
    assert t0 == 1000.0 and rows[:, 0].tolist() == [0.5, 0.0]
    with pytest.raises(ValueError, match="no send time"):
        soak.relative_requests(np.array([[0.0, 3.0, 0]]))


@pytest.fixture
def repository(tmp_path):
    save_gated_network(tiny_network(0), tmp_path / "repo", "tiny", 1)
    return tmp_path / "repo"


def test_short_soak_end_to_end(repository, tmp_path, capsys):
    out = tmp_path / "out"
    # Loose latency and memory limits: a 12 s run on a busy CI machine can drift past the
    # real ones (the verdicts themselves are tested above); failures are still judged at 0.
    code = main(["soak", "--model-repository", str(repository), "--users", "8",
                 "--seconds", "12", "--warmup-seconds", "3", "--window-seconds", "3",
                 "--sample-seconds", "0.5", "--max-p99-ratio", "1000",
                 "--max-rss-growth", "10", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert result_limits(out) == {"p99_ratio": 1000.0, "rss_growth": 10.0, "failures": 0}
    result = json.loads((out / "soak.json").read_text())
    assert result["config"]["model"] == "tiny"  # the repository's only model, by default
    assert result["config"]["users"] == 8 and result["config"]["pid"] > 0
    totals = result["totals"]
    assert totals["requests"] > 0 and totals["failures"] == 0, printed
    assert result["verdicts"]["failures"]["passed"]
    assert result["locust"]["requests"] == totals["requests"]
    with (out / result["config"]["requests_file"]).open() as f:
        assert sum(1 for _ in csv.reader(f)) == totals["requests"] + 1  # and a header
    windows = result["windows"]
    # ~12 s of sends in windows of 3 s: 4 windows, or 3 where a busy machine delays locust's
    # first or last sends by more than 1.5 s (a CI run saw that); the count follows the span.
    sent = soak.read_requests(out / result["config"]["requests_file"])[:, 0]
    assert len(windows) == max(1, round(float(sent.max() - sent.min()) / 3)) in (3, 4)
    assert sum(w["requests"] for w in windows) == totals["requests"]
    assert all(w["p99_ms"] >= w["p50_ms"] > 0 for w in windows)
    memory = result["memory"]
    assert memory["samples_after_warmup"] >= 5
    assert all(s["rss"] > 10 * MIB for s in memory["samples"])
    assert memory["warmup_rss"] > 0 and memory["max_rss"] >= memory["warmup_rss"]
    assert result["passed"] == (code == 0) == all(
        v["passed"] for v in result["verdicts"].values())
    assert (out / "soak.png").stat().st_size > 10_000
    assert "| failed requests | 0 |" in (out / "summary.md").read_text()
    assert "rss" in printed and "requests" in printed  # progress lines


def test_soak_of_a_running_server_measures_the_pid_it_is_given(repository, tmp_path):
    out = tmp_path / "out"
    with Server(repository) as server:
        code = main(["soak", "--url", server.url, "--pid", str(server.process.pid),
                     "--users", "2", "--seconds", "4", "--warmup-seconds", "1",
                     "--window-seconds", "2", "--sample-seconds", "0.5",
                     "--max-p99-ratio", "1000", "--max-rss-growth", "10", "--out", str(out)])
    assert code == 0
    result = json.loads((out / "soak.json").read_text())
    assert result["config"]["model"] == "tiny" and result["totals"]["failures"] == 0
    assert result["memory"]["samples_after_warmup"] >= 3
    assert len(result["windows"]) == 2


def result_limits(out) -> dict:
    verdicts = json.loads((out / "soak.json").read_text())["verdicts"]
    return {name: check["limit"] for name, check in verdicts.items()}


def test_a_repository_without_models_is_refused(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["soak", "--model-repository", str(tmp_path / "empty")]) == 1
    assert "holds no model" in capsys.readouterr().err


def test_an_unknown_model_is_named(repository, capsys):
    assert main(["soak", "--model-repository", str(repository), "--model", "nope"]) == 1
    assert "no model 'nope' (it has tiny)" in capsys.readouterr().err
