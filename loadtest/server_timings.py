"""The server's own view of a load test, from the responses: milliseconds in the server, queued
and in the forward, examples per forward, and the fraction of multiply-adds the compute reports
say were saved. Exact percentiles (locust's are rounded to whole milliseconds)."""

from __future__ import annotations

import numpy as np

FIELDS = ("total_ms", "queue_ms", "compute_ms", "batch_size", "saved_fraction")


class ServerTimings:
    def __init__(self) -> None:
        self.samples: list[tuple[float, ...]] = []

    def clear(self) -> None:
        self.samples = []

    def drain(self) -> list[tuple[float, ...]]:
        """Hand over and forget what was gathered (a worker's report to the master)."""
        out, self.samples = self.samples, []
        return out

    def extend(self, samples: list) -> None:
        self.samples.extend(tuple(s) for s in samples)

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

    def summary(self) -> dict[str, float]:
        if not self.samples:
            return {"requests": 0}
        columns = dict(zip(FIELDS, np.array(self.samples, dtype=np.float64).T, strict=True))
        out: dict[str, float] = {"requests": len(self.samples)}
        for name in ("total_ms", "queue_ms", "compute_ms"):
            for q in (50, 95, 99):
                out[f"{name}_p{q}"] = float(np.percentile(columns[name], q))
        out["mean_batch_size"] = float(columns["batch_size"].mean())
        out["saved_fraction"] = float(columns["saved_fraction"].mean())
        return out
