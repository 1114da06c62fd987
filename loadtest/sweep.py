"""The latency-versus-sparsity sweep: one model family at several densities (same architecture
and weights, thresholds calibrated per density: `sparsegate-variants`), each load-tested with
locust headless at fixed user counts (closed loop) and at a fixed arrival rate.

Everything goes through HTTP and command lines: a server is started with `sparsegate-serve`
(or one is targeted with `url`), models are prepared with `sparsegate-train` and
`sparsegate-variants` when asked, and locust runs in its own process per cell (its gevent
monkey-patching stays out of this one).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

LOCUSTFILE = Path(__file__).with_name("locustfile.py")


@dataclass
class Sweep:
    family: str  # models are <family>-d<percent>
    densities: list[int] = field(default_factory=lambda: [100, 50, 25, 10, 5])  # percent
    users: list[int] = field(default_factory=lambda: [1, 8, 32])
    rate: float = 50.0  # requests per second of the fixed-arrival-rate cell
    rate_users: int = 16  # users sharing that rate
    seconds: float = 20.0  # per cell
    protocol: str = "v1"

    def model(self, density: int) -> str:
        return f"{self.family}-d{density}"


def prepare_models(repository: Path, sweep: Sweep, data: str, epochs: int,
                   log: Callable[[str], None] = print) -> None:
    """Train `<family>` (the `blocks` preset, straight-through, 10 %) if it is not in the
    repository, then write whatever density variants are missing."""
    if not published(repository, sweep.family):
        log(f"training {sweep.family} ({data}, {epochs} epochs)")
        # Every epoch stochastic (no served-gate epochs from the preset's recipe): the sweep
        # times the engine at calibrated densities, and `epochs` stays its whole training.
        _run([_tool("sparsegate-train"), "--preset", "blocks", "--estimator", "st",
              "--density", "0.1", "--data", data, "--epochs", str(epochs),
              "--deterministic-epochs", "0", "--repository",
              str(repository), "--name", sweep.family, "--run-dir",
              str(repository.parent / "runs" / f"train-{sweep.family}")])
    missing = [d for d in sweep.densities if not published(repository, sweep.model(d))]
    if missing:
        log(f"calibrating {sweep.family} to densities {missing} %")
        _run([_tool("sparsegate-variants"), "--model-repository", str(repository), "--name",
              sweep.family, "--data", data, "--densities",
              ",".join(str(d / 100) for d in missing)])


def published(repository: Path, name: str) -> bool:
    """Whether the repository holds a version of `name` (a <name>/<version>/config.json)."""
    folder = repository / name
    return folder.is_dir() and any((v / "config.json").is_file() for v in folder.iterdir())


def start_server(repository: Path, models: list[str], extra: list[str],
                 env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """sparsegate-serve on a free loopback port with just these models; returns it, ready.
    env: variables added to this process's for the server (such as SPARSEGATE_API_KEY,
    which the command line, shown by `ps`, should not carry)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen([_tool("sparsegate-serve"), "--model-repository",
                                str(repository), "--port", str(port), "--log-level", "warning",
                                "--models", *models, *extra],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, **env} if env else None)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sparsegate-serve exited:\n{process.stdout.read()}")
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("sparsegate-serve was not ready in 300 s")


def run(sweep: Sweep, url: str, out: Path, log: Callable[[str], None] = print) -> list[dict]:
    """Every cell of the sweep against the server at `url`; rows as dicts."""
    for density in sweep.densities:
        response = httpx.get(f"{url}/v2/models/{sweep.model(density)}", timeout=10)
        if response.status_code != 200:
            raise RuntimeError(f"the server at {url} has no model {sweep.model(density)!r} "
                               f"(prepare them with --prepare): {response.text[:200]}")
    cells = [(users, 0.0, "users") for users in sweep.users]
    cells.append((sweep.rate_users, sweep.rate / sweep.rate_users, "rate"))
    rows = []
    for density in sweep.densities:
        for users, rate_per_user, mode in cells:
            log(f"{sweep.model(density)}: {mode} {users} users"
                + (f" at {sweep.rate:g} req/s" if mode == "rate" else ""))
            row = run_locust(url, sweep.model(density), users, rate_per_user, sweep.seconds,
                             sweep.protocol, out / "locust" / f"d{density}-{mode}-{users}")
            rows.append({"density": density / 100, "model": sweep.model(density),
                         "mode": mode, "users": users,
                         "offered_rate": sweep.rate if mode == "rate" else None, **row})
    return rows


def run_locust(url: str, model: str, users: int, rate_per_user: float, seconds: float,
               protocol: str, prefix: Path, requests: Path | None = None) -> dict:
    """One headless locust run: what `loadtest.server_timings` measured (client side and the
    server's own timings); locust's CSVs are kept beside, for reference. With `requests`,
    every request is also written there (CSV: sent_s, ms, failed)."""
    prefix.parent.mkdir(parents=True, exist_ok=True)
    timings = prefix.with_suffix(".timings.json")
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
               "-u", str(users), "-r", str(users), "-t", f"{seconds:g}s", "--host", url,
               "--csv", str(prefix), "--only-summary", "--stop-timeout", "10",
               "--loglevel", "WARNING", "--model", model, "--protocol", protocol,
               "--rate-per-user", str(rate_per_user), "--timings", str(timings)]
    if requests is not None:
        command += ["--requests", str(requests)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120)
    measured = json.loads(timings.read_text()) if timings.is_file() else {}
    if not measured.get("requests"):
        raise RuntimeError(f"locust sent no request to {model} (exit {result.returncode}):\n"
                           f"{result.stderr[-3000:]}")
    return measured


def _tool(name: str) -> str:
    """A console script of this installation (beside the running Python), else from PATH."""
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.exists() else name


def _run(command: list[str]) -> None:
    with tempfile.TemporaryFile("w+") as output:
        code = subprocess.call(command, stdout=output, stderr=subprocess.STDOUT)
        if code != 0:
            output.seek(0)
            raise RuntimeError(f"{' '.join(command[:2])} failed ({code}):\n"
                               f"{output.read()[-3000:]}")
