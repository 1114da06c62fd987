"""The checks of scripts/compose-check against a running stack (standard library only: it runs
with the host's python3). Prints what it saw and exits non-zero at the first failed check.

Environment: API_REPLICAS, LB_PORT, LOCUST_PORT, PROMETHEUS_PORT, LOCUST_WORKERS (2),
COMPOSE_PROJECT_NAME; the model is blocks-digits-st (the trainer's default).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter

REPLICAS = int(os.environ.get("API_REPLICAS", "3"))
LB = f"http://127.0.0.1:{os.environ.get('LB_PORT', '8080')}"
LOCUST = f"http://127.0.0.1:{os.environ.get('LOCUST_PORT', '8089')}"
PROMETHEUS = f"http://127.0.0.1:{os.environ.get('PROMETHEUS_PORT', '9090')}"
WORKERS = int(os.environ.get("LOCUST_WORKERS", "2"))
MODEL = os.environ.get("LOADTEST_MODEL", "blocks-digits-st")
COMPOSE = (["docker-compose"] if shutil.which("docker-compose") else ["docker", "compose"])


def say(message: str) -> None:
    print(f"[compose-check] {message}", flush=True)


def fail(message: str) -> None:
    say(f"FAILED: {message}")
    # What the containers said is what tells a failed check's cause: the check tears the stack
    # down when it exits, so the logs are printed now.
    logs = subprocess.run([*COMPOSE, "logs", "--no-color", "--tail", "40"],
                          capture_output=True, text=True, timeout=120)
    print(logs.stdout[-12000:] + logs.stderr[-2000:], flush=True)
    sys.exit(1)


def http(method: str, url: str, body: object = None, form: dict | None = None,
         timeout: float = 10) -> tuple[int, dict, bytes]:
    data, headers = None, {}
    if body is not None:
        data, headers = json.dumps(body).encode(), {"Content-Type": "application/json"}
    if form is not None:
        data = urllib.parse.urlencode(form).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def wait_for(what: str, check, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (OSError, ValueError, KeyError, StopIteration):
            pass
        time.sleep(1)
    fail(f"{what} not within {seconds:.0f} s")


def _aggregated() -> dict:
    stats = json.loads(http("GET", f"{LOCUST}/stats/requests")[2])
    return next(s for s in stats["stats"] if s["name"] == "Aggregated")


def main() -> None:
    wait_for("the load balancer ready", lambda: http("GET", f"{LB}/v2/health/ready")[0] == 200)
    say(f"load balancer ready at {LB}")

    upstreams, body = Counter(), {"instances": [[0.25] * 64]}
    for _ in range(200):
        status, headers, raw = http("POST", f"{LB}/v1/models/{MODEL}:predict", body)
        if status != 200:
            fail(f"predict through the load balancer answered {status}: {raw[:300]!r}")
        upstreams[headers.get("X-Upstream", "?")] += 1
        if len(upstreams) == REPLICAS and sum(upstreams.values()) >= 3 * REPLICAS:
            break
    report = json.loads(raw)["predictions"][0]["compute"]
    say(f"{sum(upstreams.values())} requests answered by {len(upstreams)} replicas "
        f"{dict(upstreams)}; compute report {report}")
    if len(upstreams) != REPLICAS:
        fail(f"expected {REPLICAS} replicas behind the load balancer, saw {len(upstreams)}")
    status, _, raw = http("POST", f"{LB}/v2/models/{MODEL}/infer", {"inputs": [
        {"name": "input", "shape": [2, 64], "datatype": "FP32", "data": [0.5] * 128}]})
    if status != 200 or "saved_fraction" not in json.loads(raw)["parameters"]:
        fail(f"Open Inference Protocol infer answered {status}: {raw[:300]!r}")
    say("Open Inference Protocol infer through the load balancer: 200")

    for index in range(1, REPLICAS + 1):
        metrics = subprocess.run(
            [*COMPOSE, "exec", "-T", "--index", str(index), "api", "curl", "-fs",
             "http://127.0.0.1:8000/metrics"], capture_output=True, text=True, timeout=60)
        line = next((x for x in metrics.stdout.splitlines()
                     if x.startswith(f'sparsegate_examples_total{{model="{MODEL}"}}')), None)
        if metrics.returncode != 0 or line is None or float(line.split()[-1]) <= 0:
            fail(f"replica {index}: /metrics has no examples served ({metrics.stderr[-300:]})")
        say(f"replica {index} /metrics: {line}")

    wait_for(f"{WORKERS} locust workers",
             lambda: json.loads(http("GET", f"{LOCUST}/stats/requests")[2]).get(
                 "worker_count") == WORKERS, 120)
    status, _, raw = http("POST", f"{LOCUST}/swarm", form={
        "user_count": 8, "spawn_rate": 8, "host": "http://lb:8080"})
    if status != 200:
        fail(f"locust /swarm answered {status}: {raw[:300]!r}")
    # The workers read the model's metadata and encode their request bodies before their users
    # start (loadtest/locustfile.py), and report every 3 s: on a busy machine the first
    # requests show up late, so the 15-second window starts when they do.
    wait_for("the locust swarm's first requests", lambda: _aggregated()["num_requests"] > 0, 120)
    time.sleep(15)
    stats = json.loads(http("GET", f"{LOCUST}/stats/requests")[2])
    http("GET", f"{LOCUST}/stop")
    total = next(s for s in stats["stats"] if s["name"] == "Aggregated")
    say(f"locust (master + {stats.get('worker_count')} workers, 8 users, 15 s): "
        f"{total['num_requests']} requests, {total['num_failures']} failures, "
        f"{stats.get('total_rps', 0):.0f} req/s, median {total['median_response_time']} ms")
    if total["num_requests"] < 50 or total["num_failures"]:
        fail("the locust swarm did not run cleanly")

    def targets_up() -> bool:
        data = json.loads(http("GET", f"{PROMETHEUS}/api/v1/targets")[2])["data"]
        up = [t for t in data["activeTargets"] if t["health"] == "up"]
        return len(up) == REPLICAS

    wait_for(f"Prometheus scraping {REPLICAS} replicas", targets_up, 90)
    say(f"Prometheus scrapes all {REPLICAS} replicas")
    say("all checks passed")


if __name__ == "__main__":
    main()
