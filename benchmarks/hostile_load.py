"""Well-behaved clients measured while one hostile client sends pathological bodies, against a
running server: the measurement behind `benchmarks.hostile_bodies` and its test.

Each client keeps one keep-alive HTTP/1.1 connection on a blocking socket in its own thread:
a health prober (`/v2/health/live` and `/v2/health/ready` in turn) and an inference client (one
example per request on the JSON API), each pausing 10 ms between requests. The attacker sends
one body back to back from its own process at the lowest CPU priority: on a small machine that
clients and server share, its own sending must not take CPU from the server (a real attacker
sends from elsewhere); what is left is what its bodies cost the server. Imports no torch, so
that process starts fast.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HEALTH_P99_BOUND_MS = 100.0
INFER_P50_BOUND_RATIO = 2.0
PAUSE_S = 0.01  # between a well-behaved client's requests


@dataclass
class Attack:
    name: str
    path: str
    body: bytes
    bounded: bool  # whether the service promises the bounds under it


def attacks(model: str, input_size: int, body_limit: int, max_instances: int) -> list[Attack]:
    """Each attack's body, as large as the limit lets it be:

    - `v1 empty rows`: `{"instances": [[], [], ...]}`, millions of empty examples;
    - `v2 one-number rows`: an Open Inference Protocol input whose `data` is millions of `[0]`;
    - `v1 one long row`: one example of millions of zeros;
    - `largest valid` (where it fits under the limit): the largest body the server must accept,
      max_instances full examples. Not bounded: its forward is real work, shared with the other
      clients' requests by the batcher; shown so the health figures under it can be read.
    """
    room = body_limit - 256  # for the JSON around the repeated part

    def repeated(head: bytes, item: bytes, tail: bytes) -> bytes:
        count = (room - len(head) - len(tail)) // (len(item) + 1)
        return head + b",".join([item] * count) + tail

    v1, v2 = f"/v1/models/{model}:predict", f"/v2/models/{model}/infer"
    v2_head = (b'{"inputs": [{"name": "input", "shape": [1, %d], "datatype": "FP32", "data": ['
               % input_size)
    row = b"[" + b",".join([b"0.123456789"] * input_size) + b"]"
    valid = b'{"instances": [' + b",".join([row] * max_instances) + b"]}"
    found = [Attack("v1 empty rows", v1, repeated(b'{"instances": [', b"[]", b"]}"), True),
             Attack("v2 one-number rows", v2, repeated(v2_head, b"[0]", b"]}]}"), True),
             Attack("v1 one long row", v1, repeated(b'{"instances": [[', b"0", b"]]}"), True)]
    if len(valid) <= body_limit:
        found.append(Attack("largest valid", v1, valid, False))
    return found


class Connection:
    """One keep-alive HTTP/1.1 connection on a blocking socket; reconnects when the server
    closed it."""

    def __init__(self, port: int, timeout_s: float = 30.0, retry: bool = True) -> None:
        self.port, self.timeout_s, self.retry = port, timeout_s, retry
        self.sock: socket.socket | None = None
        self.buffer = b""

    def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
        for attempt in range(2):
            try:
                if self.sock is None:
                    self.sock = socket.create_connection(("127.0.0.1", self.port),
                                                         timeout=self.timeout_s)
                    self.buffer = b""
                self.sock.sendall(head.encode() + body)
                return self._response()
            except OSError:
                self.close()
                if attempt or not self.retry:
                    raise
        raise AssertionError("unreachable")

    def _response(self) -> tuple[int, bytes]:
        while b"\r\n\r\n" not in self.buffer:
            self._read()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        fields = dict(line.lower().split(":", 1) for line in lines[1:] if ":" in line)
        length = int(fields.get("content-length", "0"))
        while len(self.buffer) < length:
            self._read()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        if "close" in fields.get("connection", ""):
            self.close()
        return status, body

    def _read(self) -> None:
        data = self.sock.recv(1 << 16)
        if not data:
            raise ConnectionResetError("closed by the server")
        self.buffer += data

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def _probe_health(port: int, stop: threading.Event, latencies: list[float]) -> None:
    connection = Connection(port)
    paths = ("/v2/health/live", "/v2/health/ready")
    i = 0
    while not stop.is_set():
        start = time.perf_counter()
        status, _ = connection.request("GET", paths[i % 2])
        latencies.append((time.perf_counter() - start) * 1e3)
        assert status == 200, f"health answered {status}"
        i += 1
        time.sleep(PAUSE_S)
    connection.close()


def _infer(port: int, model: str, input_size: int, stop: threading.Event,
           latencies: list[float]) -> None:
    connection = Connection(port)
    rng = np.random.default_rng(0)
    path = f"/v1/models/{model}:predict"
    while not stop.is_set():
        body = json.dumps({"instances": rng.uniform(0, 1, (1, input_size)).tolist()})
        start = time.perf_counter()
        status, answer = connection.request("POST", path, body.encode())
        latencies.append((time.perf_counter() - start) * 1e3)
        assert status == 200, f"inference answered {status}: {answer[:200]!r}"
        time.sleep(PAUSE_S)
    connection.close()


def _attack(port: int, attack: Attack, ready, stop, answers) -> None:
    os.nice(19)
    statuses: Counter = Counter()
    connection = Connection(port, retry=False)  # each request sent once, and counted
    ready.set()
    while not stop.is_set():
        try:
            status, _ = connection.request("POST", attack.path, attack.body)
            statuses[str(status)] += 1
        except OSError as error:  # a server may close a connection it refused a body on
            statuses[type(error).__name__] += 1
    connection.close()
    answers.put(dict(statuses))


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of process `pid` so far (Linux's /proc; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(port: int, model: str, input_size: int, seconds: float,
            attack: Attack | None = None, server_pid: int | None = None,
            clients: bool = True) -> dict:
    """Health and inference latencies for `seconds`, with `attack` running alongside; with
    `server_pid`, the server's CPU use (cores busy on average). Without `clients`, the attack
    runs alone (no health prober, no inference client: their counts are 0)."""
    stop = threading.Event()
    health: list[float] = []
    inference: list[float] = []
    spawn = multiprocessing.get_context("spawn")
    attack_ready, attack_stop, answers = spawn.Event(), spawn.Event(), spawn.Queue()
    attacker = None
    if attack is not None:
        attacker = spawn.Process(target=_attack,
                                 args=(port, attack, attack_ready, attack_stop, answers))
        attacker.start()
        if not attack_ready.wait(60):
            raise RuntimeError("the attacker process did not start")
    threads = [threading.Thread(target=_probe_health, args=(port, stop, health)),
               threading.Thread(target=_infer, args=(port, model, input_size, stop, inference))
               ] if clients else []
    cpu_before, started = cpu_seconds(server_pid), time.perf_counter()
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join(60)
    server_cores = (cpu_seconds(server_pid) - cpu_before) / (time.perf_counter() - started)
    statuses: dict[str, int] = {}
    if attacker is not None:
        attack_stop.set()
        statuses = answers.get(timeout=60)
        attacker.join(60)
    return {"phase": attack.name if attack else "unloaded",
            "bounded": attack.bounded if attack else True,
            "attack_body_bytes": len(attack.body) if attack else 0,
            "health_probes": len(health),
            "health_p50_ms": percentile(health, 50), "health_p99_ms": percentile(health, 99),
            "health_max_ms": max(health, default=float("nan")),
            "infer_requests": len(inference),
            "infer_p50_ms": percentile(inference, 50),
            "infer_p99_ms": percentile(inference, 99),
            "attack_answers": dict(sorted(statuses.items())),
            "server_cores_busy": server_cores}


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def judge(rows: list[dict]) -> None:
    """Each row's inference p50 as a ratio to the first (unloaded) row's, and whether it keeps
    the bounds (health for every row; inference only where the attack is bounded)."""
    unloaded = rows[0]["infer_p50_ms"]
    for row in rows:
        row["infer_p50_ratio"] = row["infer_p50_ms"] / unloaded
        row["within_bounds"] = row["health_p99_ms"] <= HEALTH_P99_BOUND_MS and (
            not row["bounded"] or row["infer_p50_ratio"] <= INFER_P50_BOUND_RATIO)
