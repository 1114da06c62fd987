"""Locust users of a sparsegate server.

    locust -f loadtest/locustfile.py --host http://127.0.0.1:8000 --model blocks-digits-st
    locust -f loadtest/locustfile.py --headless -u 32 -r 32 -t 30s --host ... --model ... \
        --protocol v1 --timings runs/timings.json

Each user sends real examples of the model's data set (`loadtest.data`, chosen from the model's
input size in `GET /v2/models/{model}`), one request after another (or at `--rate-per-user`
requests per second: a fixed arrival rate), through the JSON API (`/v1/models/{model}:predict`)
and/or the Open Inference Protocol (`/v2/models/{model}/infer`).

Locust rounds response times to whole milliseconds (and its CSV misses a run's last second), so
every inference request's client-side time and the server's own timings from every response
(total, queue and forward milliseconds, examples per forward, the saved fraction its compute
report gives) are collected here, gathered from the workers on the master, and written with
exact percentiles to `--timings` when the test stops; `--requests` also writes every request
(when it was sent, milliseconds, failed) as CSV, for percentiles per time window (the soak).
"""

from __future__ import annotations

import itertools
import json
import random
import time
from pathlib import Path

import gevent
from locust import FastHttpUser, constant, constant_throughput, events, task
from locust.runners import MasterRunner, WorkerRunner

from loadtest.data import examples, import_readers
from loadtest.server_metadata import model_input_size
from loadtest.server_timings import ServerTimings

# Headless locust sets its run-time timer from gevent's cached loop time, which stands still
# while imports block (the loop has not run yet): on a busy machine the seconds spent importing
# this file and its data readers made a 2 s run end before its first request. So import the
# readers here rather than in the test_start hook, then bring the loop's clock up to date.
import_readers()
gevent.get_hub().loop.update_now()

TIMINGS = ServerTimings()
_BODIES: dict[str, list[bytes]] = {}
_STARTED = [0.0]  # when the test started (perf_counter), for requests per second


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    parser.add_argument("--model", default="blocks-digits-st", help="model to request")
    parser.add_argument("--protocol", choices=["v1", "v2", "both"], default="both")
    parser.add_argument("--rows", type=int, default=1, help="examples per request")
    parser.add_argument("--rate-per-user", type=float, default=0.0,
                        help="requests per second per user (0: as fast as answered)")
    parser.add_argument("--timings", default="",
                        help="write the measured timings here (JSON) when the test stops")
    parser.add_argument("--requests", default="",
                        help="write every request here (CSV: sent_s, ms, failed) at the stop")


@events.test_start.add_listener
def _prepare(environment, **_) -> None:
    """Encode the request bodies before any user starts: done in a user's on_start, the
    encoding would block every other user's gevent loop and show up as ~0.5 s of latency in
    requests already in flight (measured: p99 600 ms against a server p99 of 45 ms)."""
    TIMINGS.clear()
    _STARTED[0] = time.perf_counter()
    options = environment.parsed_options
    if options is None or isinstance(environment.runner, MasterRunner) or not environment.host:
        return
    input_size = model_input_size(environment.host, options.model)
    for protocol in ("v1", "v2") if options.protocol == "both" else (options.protocol,):
        _BODIES[f"{options.model}/{options.rows}/{protocol}"] = _bodies(
            input_size, options.rows, protocol)


@events.request.add_listener
def _on_request(name, response_time, exception, start_time=0.0, **_) -> None:
    if name in ("v1", "v2"):
        TIMINGS.record_client(response_time, exception is not None, start_time)


@events.report_to_master.add_listener
def _send(client_id, data, **_) -> None:
    data["sparsegate"] = TIMINGS.drain()


@events.worker_report.add_listener
def _receive(client_id, data, **_) -> None:
    TIMINGS.extend(data.get("sparsegate", {}))


@events.test_stop.add_listener
def _write(environment, **_) -> None:
    options = environment.parsed_options
    if options is None or isinstance(environment.runner, WorkerRunner):
        return
    if options.timings:
        Path(options.timings).parent.mkdir(parents=True, exist_ok=True)
        seconds = time.perf_counter() - _STARTED[0]
        Path(options.timings).write_text(json.dumps(TIMINGS.summary(seconds), indent=1))
    if options.requests:
        Path(options.requests).parent.mkdir(parents=True, exist_ok=True)
        TIMINGS.write_requests(options.requests)


def _bodies(input_size: int, rows: int, protocol: str) -> list[bytes]:
    data, _ = examples(input_size, 1000)
    out = []
    for start in range(0, len(data) - rows + 1, rows):
        x = data[start:start + rows].round(5)
        if protocol == "v1":
            out.append(json.dumps({"instances": x.tolist()}).encode())
        else:
            out.append(json.dumps({"inputs": [{"name": "input", "shape": list(x.shape),
                                               "datatype": "FP32",
                                               "data": x.reshape(-1).tolist()}]}).encode())
    return out


class SparsegateUser(FastHttpUser):
    """Sends one request after another; see the module docstring."""

    def wait_time(self):  # decided per user from the options
        rate = self.environment.parsed_options.rate_per_user
        return (constant_throughput(rate) if rate > 0 else constant(0))(self)

    def on_start(self) -> None:
        options = self.environment.parsed_options
        self.model = options.model
        key = f"{self.model}/{options.rows}"
        self.protocols = ["v1", "v2"] if options.protocol == "both" else [options.protocol]
        if any(f"{key}/{p}" not in _BODIES for p in self.protocols):
            raise RuntimeError(f"no request bodies for {self.model!r}: the test_start hook "
                               "could not read its metadata from the server")
        if options.rate_per_user > 0:
            # Users spawn together; without a random phase they would all fire at the same
            # instant every period (bursts of `users` requests, not a steady arrival rate).
            gevent.sleep(random.uniform(0.0, 1.0 / options.rate_per_user))
        self.next_body = {p: itertools.cycle(random.sample(_BODIES[f"{key}/{p}"],
                                                           len(_BODIES[f"{key}/{p}"])))
                          for p in self.protocols}

    @task
    def infer(self) -> None:
        protocol = random.choice(self.protocols)
        body = next(self.next_body[protocol])
        path = (f"/v1/models/{self.model}:predict" if protocol == "v1"
                else f"/v2/models/{self.model}/infer")
        with self.client.post(path, data=body, name=protocol, catch_response=True,
                              headers={"Content-Type": "application/json"}) as response:
            if response.status_code != 200:
                response.failure(f"{response.status_code}: {response.text[:200]}")
                return
            TIMINGS.record(protocol, response.json())
