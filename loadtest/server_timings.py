"""What a load test measured, with exact percentiles (locust's own are rounded to whole
milliseconds, and its CSV misses the last second of a run): the client-side latency of every
inference request and whether it failed, and the server's own view from the responses:
milliseconds in the server, queued and in the forward, examples per forward, and the fraction
of multiply-adds the compute reports say were saved. Each client record also keeps when its
request was sent, so a long run (the soak) can compute exact percentiles per time window."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

FIELDS = ("total_ms", "queue_ms", "compute_ms", "batch_size", "saved_fraction")


class ServerTimings:
    def __init__(self) -> None:
        self.samples: list[tuple[float, ...]] = []  # per answered request, FIELDS
        # per request: milliseconds, failed, when it was sent (epoch seconds; 0 if unknown)
        self.client: list[tuple[float, bool, float]] = []

    def clear(self) -> None:
        self.samples, self.client = [], []

    def drain(self) -> dict[str, list]:
        """Hand over and forget what was gathered (a worker's report to the master)."""
        out = {"server": self.samples, "client": self.client}
        self.clear()
        return out

    def extend(self, drained: dict[str, list]) -> None:
        self.samples.extend(tuple(s) for s in drained.get("server", []))
        self.client.extend((float(ms), bool(failed), float(sent))
                           for ms, failed, sent in drained.get("client", []))

    def record_client(self, milliseconds: float, failed: bool, sent_at: float = 0.0) -> None:
        self.client.append((milliseconds, failed, sent_at))

    def write_requests(self, path: str | Path) -> None:
        """Every client record as CSV (sent_s, ms, failed), in the order they were sent."""
        with Path(path).open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(("sent_s", "ms", "failed"))
            for ms, failed, sent in sorted(self.client, key=lambda r: r[2]):
                writer.writerow((f"{sent:.6f}", f"{ms:.3f}", int(failed)))

    def record(self, protocol: str, body: dict) -> None:
        """One response of either API."""
        if protocol == "v1":
            timings = body["timings"]
            saved = [p["compute"]["saved_fraction"] for p in body["predictions"]]
        else:
            timings = body["parameters"]
            saved = [timings["saved_fraction"]]
        self.samples.append((timings["total_ms"], timings["queue_ms"], timings["compute_ms"],
                             timings["batch_size"], sum(saved) / len(saved)))

    def summary(self, seconds: float | None = None) -> dict[str, float]:
        """Client: requests, failures, requests_per_s (over `seconds`), p50/p95/p99_ms of the
        successful ones; server: server_requests and server_* percentiles and means."""
        out: dict[str, float] = {"requests": len(self.client),
                                 "failures": sum(failed for _, failed, _ in self.client)}
        ok = [ms for ms, failed, _ in self.client if not failed]
        if seconds:
            out["requests_per_s"] = len(ok) / seconds
        if ok:
            for q in (50, 95, 99):
                out[f"p{q}_ms"] = float(np.percentile(ok, q))
            out["mean_ms"] = float(np.mean(ok))
        out["server_requests"] = len(self.samples)
        if not self.samples:
            return out
        columns = dict(zip(FIELDS, np.array(self.samples, dtype=np.float64).T, strict=True))
        for name in ("total_ms", "queue_ms", "compute_ms"):
            for q in (50, 95, 99):
                out[f"server_{name}_p{q}"] = float(np.percentile(columns[name], q))
        out["server_mean_batch_size"] = float(columns["batch_size"].mean())
        out["server_saved_fraction"] = float(columns["saved_fraction"].mean())
        return out
