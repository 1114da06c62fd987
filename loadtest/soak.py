"""The soak run: one model under steady closed-loop load for a long time (locust headless, the
server's default batching), to catch what short load tests miss: failed requests, a server
whose resident memory keeps growing, latency that drifts upwards.

Verdicts: no failed request; resident memory (the server process and its children)
growing less than 10 % between the end of the warm-up and its highest point after it; p99
latency of the last window within 20 % of the first window's. A "window" is a minute by default
(`window_s`), so a short CI run can use windows of seconds. Latencies are exact: every request
is recorded by the locustfile (when it was sent, its milliseconds, whether it failed); times are
seconds from the first request sent.

The computation (`analyse` and the functions it calls) is pure, on plain arrays and lists, so
the verdict logic is tested on synthetic series; the process handling (server, locust, memory
sampling) is the rest. Like the sweep, locust runs in its own process; it runs in a thread here
so that this process can sample the server's memory meanwhile.
"""

from __future__ import annotations

import collections
import contextlib
import json
import subprocess
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import numpy as np

from . import sweep

MIB = 2**20


@dataclass
class Plan:
    users: int = 32
    seconds: float = 600.0  # of load
    warmup_s: float = 60.0  # memory is compared with the RSS at its end
    window_s: float = 60.0  # latency percentiles per window; the first and last are compared
    sample_s: float = 5.0  # between memory samples
    protocol: str = "v1"

    def problems(self) -> list[str]:
        """What makes the plan unusable (an empty list when it is fine)."""
        out = []
        if self.users < 1:
            out.append("users must be >= 1")
        if min(self.seconds, self.warmup_s, self.window_s, self.sample_s) <= 0:
            out.append("seconds, warm-up, window and sample interval must be > 0")
        if self.warmup_s >= self.seconds:
            out.append("the warm-up must end before the run does (warm-up < seconds)")
        if 2 * self.window_s > self.seconds:
            out.append("the first and last windows must not overlap (window <= seconds / 2)")
        if self.sample_s > self.seconds - self.warmup_s:
            out.append("no memory sample would fall after the warm-up (sample interval > "
                       "seconds - warm-up)")
        return out


@dataclass
class Limits:
    """When a soak run fails: any failed request, memory that keeps growing, or a tail latency
    that drifts upward over the run."""
    failures: int = 0  # at most
    rss_growth: float = 0.10  # fraction, strictly less than
    p99_ratio: float = 1.20  # last window's p99 / first window's, at most


# --- pure computation ---------------------------------------------------------------------


def relative_requests(rows: np.ndarray) -> tuple[np.ndarray, float]:
    """(N, 3) rows of (sent epoch s, ms, failed) -> the same with times from the first request
    sent, and that first time (epoch s)."""
    if len(rows) == 0:
        raise ValueError("no request was recorded")
    if (rows[:, 0] <= 0).any():
        raise ValueError("some requests have no send time (locust gave no start_time)")
    t0 = float(rows[:, 0].min())
    out = rows.copy()
    out[:, 0] -= t0
    return out, t0


def windows(requests: np.ndarray, window_s: float) -> list[dict]:
    """Per-window figures of (N, 3) rows of (sent s from start, ms, failed), by send time.
    Windows are window_s long from 0; there are round(span / window_s) of them (at least one)
    and the last takes everything after its start, so a run of 600.3 s in windows of 60 s has
    ten, not ten and a stub of 0.3 s whose p99 would mean nothing."""
    span = float(requests[:, 0].max()) if len(requests) else 0.0
    count = max(1, round(span / window_s))
    index = np.minimum((requests[:, 0] // window_s).astype(int), count - 1)
    out = []
    for k in range(count):
        rows = requests[index == k]
        start = k * window_s
        end = (k + 1) * window_s if k < count - 1 else max(span, start + 1e-9)
        ok = rows[rows[:, 2] == 0, 1]
        out.append({"start_s": start, "end_s": end, "requests": len(rows),
                    "failures": int(rows[:, 2].sum()),
                    "requests_per_s": len(rows) / (end - start),
                    "p50_ms": _percentile(ok, 50), "p99_ms": _percentile(ok, 99)})
    return out


def memory_growth(samples: list[tuple[float, int]], warmup_s: float,
                  end_s: float | None = None) -> dict:
    """RSS at the end of the warm-up (the first sample at or after warmup_s) against the highest
    and the last sample after it (up to end_s: the idle tail after the load says nothing);
    growths are fractions of the warm-up RSS. The slope (MiB per minute, least squares) tells
    a slow steady leak from a one-off step."""
    after = [(t, rss) for t, rss in samples if t >= warmup_s and (end_s is None or t <= end_s)]
    if not after:
        return {"warmup_rss": None, "max_rss": None, "end_rss": None, "growth": None,
                "end_growth": None, "slope_mib_per_min": None, "samples_after_warmup": 0}
    baseline, peak, last = after[0][1], max(r for _, r in after), after[-1][1]
    slope = None
    if len(after) >= 2:
        t, rss = np.array(after, dtype=np.float64).T
        slope = float(np.polyfit(t / 60.0, rss / MIB, 1)[0])
    return {"warmup_rss": baseline, "max_rss": peak, "end_rss": last,
            "growth": peak / baseline - 1.0, "end_growth": last / baseline - 1.0,
            "slope_mib_per_min": slope, "samples_after_warmup": len(after)}


def verdicts(failures: int, memory: dict | None, first: dict, last: dict,
             limits: Limits) -> dict[str, dict]:
    """Each check: its value, limit and whether it passed; `memory` None means memory was not
    measured (a server elsewhere, no --pid), and that check's `passed` is None: skipped, not
    failed. A check that should have been measured and could not be fails."""
    ratio = (last["p99_ms"] / first["p99_ms"]
             if first.get("p99_ms") and last.get("p99_ms") is not None else None)
    growth = None if memory is None else memory["growth"]
    return {
        "failures": {"value": failures, "limit": limits.failures,
                     "passed": failures <= limits.failures},
        "rss_growth": {"value": growth, "limit": limits.rss_growth,
                       "passed": None if memory is None else
                       growth is not None and growth < limits.rss_growth},
        "p99_ratio": {"value": ratio, "limit": limits.p99_ratio,
                      "passed": ratio is not None and ratio <= limits.p99_ratio},
    }


def analyse(requests: np.ndarray, samples: list[tuple[float, int]] | None, plan: Plan,
            limits: Limits | None = None) -> dict:
    """Everything the soak reports, from per-request rows (sent s from the start, ms, failed)
    and memory samples (s from the same start, RSS bytes; None when not measured)."""
    limits = limits or Limits()
    per_window = windows(requests, plan.window_s)
    first, last = per_window[0], per_window[-1]
    ok = requests[requests[:, 2] == 0, 1]
    end_s = float((requests[:, 0] + requests[:, 1] / 1000.0).max())  # the last answer
    failures = int(requests[:, 2].sum())
    memory = None if samples is None else {
        **memory_growth(samples, plan.warmup_s, end_s),
        "samples": [{"t_s": t, "rss": rss} for t, rss in samples]}
    checks = verdicts(failures, memory, first, last, limits)
    return {
        "totals": {"requests": len(requests), "failures": failures, "load_s": end_s,
                   "requests_per_s": len(requests) / end_s if end_s > 0 else None,
                   "p50_ms": _percentile(ok, 50), "p99_ms": _percentile(ok, 99)},
        "latency": {"first_p50_ms": first["p50_ms"], "first_p99_ms": first["p99_ms"],
                    "last_p50_ms": last["p50_ms"], "last_p99_ms": last["p99_ms"],
                    "p50_ratio": _ratio(last["p50_ms"], first["p50_ms"]),
                    "p99_ratio": checks["p99_ratio"]["value"]},
        "windows": per_window, "memory": memory, "limits": asdict(limits), "verdicts": checks,
        "passed": all(check["passed"] is not False for check in checks.values()),
    }


def _percentile(values: np.ndarray, q: float) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


# --- processes: server, locust, memory ----------------------------------------------------


def repository_model(repository: Path, model: str | None) -> str:
    """The model to soak: `model`, checked, else the repository's only (or first) model."""
    if not repository.is_dir():
        raise RuntimeError(f"model repository {repository} is not a folder")
    names = sorted(d.name for d in repository.iterdir() if sweep.published(repository, d.name))
    if not names:
        raise RuntimeError(f"model repository {repository} holds no model (no "
                           "<name>/<version>/config.json)")
    return _chosen(names, model, f"model repository {repository}")


def server_model(url: str, model: str | None) -> str:
    """The model to soak on a running server: `model`, checked, else the server's first."""
    response = httpx.get(f"{url}/v1/models", timeout=10)
    response.raise_for_status()
    names = [m["name"] for m in response.json()["models"]]
    if not names:
        raise RuntimeError(f"the server at {url} serves no model")
    return _chosen(names, model, f"the server at {url}")


def _chosen(names: list[str], model: str | None, where: str) -> str:
    """`model` if `names` has it (an error naming `where` if not), else the first name."""
    if model is None:
        return names[0]
    if model not in names:
        raise RuntimeError(f"{where} has no model {model!r} (it has {', '.join(names)})")
    return model


@contextlib.contextmanager
def serve(repository: Path, model: str, extra: list[str]) -> Iterator[
        tuple[subprocess.Popen, str, collections.deque]]:
    """sparsegate-serve with just `model` (sweep.start_server), its output read all along: in
    ten minutes a server that logs could fill the pipe and block on its next write. Yields the
    process, its URL and its last lines of output; SIGTERM at exit."""
    process, url = sweep.start_server(repository, [model], extra)
    output: collections.deque = collections.deque(maxlen=200)
    reader = threading.Thread(target=lambda: output.extend(process.stdout), daemon=True)
    reader.start()
    try:
        yield process, url, output
    finally:
        process.terminate()
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def rss_bytes(pid: int) -> int | None:
    """Resident memory of the process and its children (uvicorn workers, if any); None once
    the process is gone."""
    psutil = _psutil()
    try:
        process = psutil.Process(pid)
        total = process.memory_info().rss
        children = process.children(recursive=True)
    except psutil.NoSuchProcess:
        return None
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += child.memory_info().rss
    return total


def _psutil():
    """psutil, imported here: only the soak needs it (sparsegate's loadtest extra)."""
    try:
        import psutil
    except ImportError:
        raise RuntimeError("the soak measures memory with psutil: pip install psutil") from None
    return psutil


def served_requests(url: str, model: str) -> int | None:
    """Requests the server has answered for `model` so far (its Prometheus latency histogram),
    for the progress lines; None if /metrics does not answer."""
    prefix, label = "sparsegate_request_seconds_count{", f'model="{model}"'
    try:
        text = httpx.get(f"{url}/metrics", timeout=2).text
        return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                       if line.startswith(prefix) and label in line))
    except (httpx.HTTPError, ValueError, IndexError):
        return None


def run(plan: Plan, url: str, model: str, out: Path, pid: int | None,
        log: Callable[[str], None] = print, limits: Limits | None = None) -> dict:
    """Locust for plan.seconds against `model` at `url`, the RSS of `pid` sampled meanwhile
    (when given); returns `analyse`'s result (judged by `limits`, default Limits()) with the
    run's settings and locust's summary."""
    if pid is not None:
        _psutil()  # before locust starts, not after the first sample
    out.mkdir(parents=True, exist_ok=True)
    requests_csv = out / "locust" / "soak.requests.csv"
    started = time.time()
    locust = Background(lambda: sweep.run_locust(
        url, model, plan.users, 0.0, plan.seconds, plan.protocol, out / "locust" / "soak",
        requests=requests_csv))
    samples = _sample_memory(locust, pid, url, model, plan.sample_s, started, log)
    summary = locust.result()  # raises what run_locust raised
    rows, t0 = relative_requests(read_requests(requests_csv))
    result = analyse(rows, None if pid is None else [(t - t0, r) for t, r in samples], plan,
                     limits)
    return {"config": {"url": url, "model": model, "pid": pid, **asdict(plan),
                       "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(t0)),
                       "requests_file": str(requests_csv.relative_to(out))},
            **result, "locust": summary}


def read_requests(path: Path) -> np.ndarray:
    """The locustfile's per-request CSV as (N, 3) float64: sent (epoch s), ms, failed."""
    with warnings.catch_warnings():  # a header alone (no request) is not worth a warning
        warnings.simplefilter("ignore", UserWarning)
        rows = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)
    return rows.reshape(-1, 3)


class Background:
    """Runs `call` in a daemon thread; result() joins it and returns or raises what it did."""

    def __init__(self, call: Callable[[], dict]) -> None:
        self._outcome: dict = {}
        self._thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self._thread.start()

    def _run(self, call: Callable[[], dict]) -> None:
        try:
            self._outcome["value"] = call()
        except BaseException as error:  # handed to the caller by result()
            self._outcome["error"] = error

    def wait(self, seconds: float) -> bool:
        """Whether it finished within `seconds`."""
        self._thread.join(seconds)
        return not self._thread.is_alive()

    def result(self) -> dict:
        self._thread.join()
        if "error" in self._outcome:
            raise self._outcome["error"]
        return self._outcome["value"]


def _sample_memory(locust: Background, pid: int | None, url: str, model: str, every_s: float,
                   started: float, log: Callable[[str], None]) -> list[tuple[float, int]]:
    """(epoch s, RSS bytes) every `every_s` until locust is done, with a progress line each
    time (a ten-minute run should not be silent)."""
    samples: list[tuple[float, int]] = []
    while True:
        rss = rss_bytes(pid) if pid is not None else None
        if rss is not None:
            samples.append((time.time(), rss))
        served = served_requests(url, model)
        log(f"{time.time() - started:6.0f} s  requests {'?' if served is None else served:>8}"
            f"  rss {'-' if rss is None else f'{rss / MIB:.1f} MiB'}"
            + ("  (server gone)" if pid is not None and rss is None else ""))
        if locust.wait(every_s):
            return samples


# --- outputs ------------------------------------------------------------------------------


def write_outputs(result: dict, out: Path) -> tuple[Path, Path, Path]:
    """soak.json (everything), soak.png and summary.md into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    json_path, png, md = out / "soak.json", out / "soak.png", out / "summary.md"
    json_path.write_text(json.dumps(result, indent=1))
    plot(result, png)
    md.write_text(markdown(result, png.name))
    return json_path, png, md


def plot(result: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    config, memory = result["config"], result["memory"]
    fig, (rss_ax, latency_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
    if memory and memory["samples"]:
        t = [s["t_s"] for s in memory["samples"]]
        rss_ax.plot(t, [s["rss"] / MIB for s in memory["samples"]], ".-", label="RSS")
        if memory["warmup_rss"]:
            limit = memory["warmup_rss"] * (1 + result["limits"]["rss_growth"]) / MIB
            rss_ax.axhline(limit, color="red", ls="--", alpha=0.6, label="warm-up RSS + limit")
    else:
        rss_ax.text(0.5, 0.5, "memory not measured", ha="center", transform=rss_ax.transAxes)
    rss_ax.axvline(config["warmup_s"], color="gray", ls=":", label="end of warm-up")
    middle = [(w["start_s"] + w["end_s"]) / 2 for w in result["windows"]]
    latency_ax.plot(middle, [w["p50_ms"] for w in result["windows"]], "o-", label="p50")
    latency_ax.plot(middle, [w["p99_ms"] for w in result["windows"]], "o-", label="p99")
    first_p99 = result["latency"]["first_p99_ms"]
    if first_p99:
        latency_ax.axhline(first_p99 * result["limits"]["p99_ratio"], color="red", ls="--",
                           alpha=0.6, label="first p99 × limit")
    for ax, title in ((rss_ax, "server resident memory (MiB)"),
                      (latency_ax, f"client-side latency per {config['window_s']:g} s (ms)")):
        ax.set_xlabel("seconds from the first request")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"soak: {config['model']}, {config['users']} users, {config['seconds']:g} s")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def markdown(result: dict, png_name: str) -> str:
    config, totals, checks = result["config"], result["totals"], result["verdicts"]
    memory = result["memory"] or {}
    lines = [f"Soak of {config['model']} at {config['url']} ({config.get('server', '')}): "
             f"{config['users']} users for {config['seconds']:g} s, warm-up "
             f"{config['warmup_s']:g} s, windows of {config['window_s']:g} s. "
             f"{totals['requests']} requests ({_f(totals['requests_per_s'], 1)} req/s), "
             f"p50 {_f(totals['p50_ms'])} ms, p99 {_f(totals['p99_ms'])} ms.", "",
             f"![memory and latency over the run]({png_name})", "",
             "| check | value | limit | verdict |", "|---|---:|---:|---|",
             f"| failed requests | {checks['failures']['value']} | "
             f"{checks['failures']['limit']} | {_verdict(checks['failures'])} |",
             f"| RSS growth after warm-up (max) | {_pct(checks['rss_growth']['value'])} | "
             f"< {100 * checks['rss_growth']['limit']:g} % | {_verdict(checks['rss_growth'])} |",
             f"| p99 last / first window | {_f(checks['p99_ratio']['value'], 3)} | "
             f"<= {checks['p99_ratio']['limit']:g} | {_verdict(checks['p99_ratio'])} |", "",
             f"RSS: {_mib(memory.get('warmup_rss'))} at the end of the warm-up, "
             f"{_mib(memory.get('max_rss'))} at most, {_mib(memory.get('end_rss'))} at the end "
             f"({_pct(memory.get('end_growth'))}; slope "
             f"{_f(memory.get('slope_mib_per_min'), 3)} MiB/min). Latency: first window p50 "
             f"{_f(result['latency']['first_p50_ms'])} / p99 "
             f"{_f(result['latency']['first_p99_ms'])} ms, last window p50 "
             f"{_f(result['latency']['last_p50_ms'])} / p99 "
             f"{_f(result['latency']['last_p99_ms'])} ms.", "",
             f"**{'PASS' if result['passed'] else 'FAIL'}**"]
    return "\n".join(lines) + "\n"


def _verdict(check: dict) -> str:
    return {True: "pass", False: "**fail**", None: "not measured"}[check["passed"]]


def _f(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:+.1f} %"


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value / MIB:.1f} MiB"
