"""The dense baselines of the CPU skip benchmark: the same network computed densely (every
block, no gater) by every implementation this machine has, so that the skipping forward is read
against the fastest of them, not a convenient one.

- `torch`: `benchmarks.cases.dense_forward`;
- `openblas`: numpy's BLAS in this process, at torch's thread count (`InProcessBlas`);
- `openblas-fresh`: numpy's BLAS in a process started without OPENBLAS_CORETYPE and
  OPENBLAS_L2_SIZE (`FreshProcessBlas`), which, set, pin OpenBLAS's kernels;
- `onnxruntime`: the dense ONNX graph (`models.skip.onnx_export.export_dense_onnx`) in
  onnxruntime at torch's thread count, where onnx and onnxruntime are installed.

Each is timed in the same alternating rounds as the skipping forward it is read against
(`benchmarks.timing.median_ms`), so a burst of load elsewhere lands on both. Their worker
threads keep spinning after their calls, OpenBLAS's for about 0.1 s, and would slow whatever
ran next: each round they join begins with `SETTLE_S` of calls off the clock.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from threadpoolctl import ThreadpoolController

from . import dense_numpy
from .timing import clock_calls

BLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
ROOT = Path(__file__).resolve().parents[1]
# How long each round of rounds that OpenBLAS joins first calls its function off the clock: its
# workers spin for 2^28 cycles after a product by default (OPENBLAS_THREAD_TIMEOUT), about 0.1 s
# at these machines' clocks.
SETTLE_S = 0.15


class InProcessBlas:
    """The dense network through numpy's BLAS in this process, at `threads` threads for its
    own calls only: a process running the skipping engine leaves OpenBLAS single-threaded
    (`models.skip.numpy_products.use_one_blas_thread`), so the limit is lifted around each
    round, off the clock. A `benchmarks.timing.SelfTimed`."""

    def __init__(self, layers: dense_numpy.DenseLayers, x: np.ndarray, threads: int) -> None:
        run = dense_numpy.forward(layers)
        self._call, self._threads = (lambda: run(x)), threads
        # Found once: threadpoolctl scans the process's loaded libraries to find the BLAS.
        self._blas = ThreadpoolController().select(user_api="blas")

    def timed_calls(self, count: int) -> list[float]:
        with self._blas.limit(limits=self._threads):
            return clock_calls(self._call, count)


class FreshProcessBlas:
    """numpy's BLAS in a process started without the OPENBLAS_ overrides
    (`benchmarks.dense_blas`), kept running while the benchmark times, so that its calls join
    the benchmark's rounds: `at_batch(b)` is a `benchmarks.timing.SelfTimed` of batch b. Use
    as a context manager; `blas` says what threadpoolctl saw of that BLAS."""

    def __init__(self, layers: dense_numpy.DenseLayers, *, threads: int, seed: int) -> None:
        self._folder = tempfile.TemporaryDirectory()
        folder = Path(self._folder.name)
        dense_numpy.save(layers, folder / "layers.npz")
        env = {key: value for key, value in os.environ.items() if key not in BLAS_OVERRIDES}
        self._errors = open(folder / "stderr.txt", "w+")  # noqa: SIM115 (closed in close)
        self._process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.dense_blas", str(folder / "layers.npz"),
             "--threads", str(threads), "--seed", str(seed)],
            env=env, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._errors, text=True)
        self.blas = self._answer()["blas"]

    def at_batch(self, batch: int) -> _FreshBatch:
        return _FreshBatch(self, batch)

    def timed_calls(self, batch: int, count: int) -> list[float]:
        self._process.stdin.write(json.dumps({"batch": batch, "calls": count}) + "\n")
        self._process.stdin.flush()
        return self._answer()["ms"]

    def _answer(self) -> dict:
        line = self._process.stdout.readline()
        if not line:
            self._process.wait(timeout=10)
            self._errors.seek(0)
            raise RuntimeError(f"benchmarks.dense_blas stopped (exit {self._process.returncode}):"
                               f"\n{self._errors.read()[-3000:]}")
        return json.loads(line)

    def close(self) -> None:
        if self._process.stdin:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process.stdout.close()
        self._errors.close()
        self._folder.cleanup()

    def __enter__(self) -> FreshProcessBlas:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _FreshBatch:
    def __init__(self, process: FreshProcessBlas, batch: int) -> None:
        self._process, self._batch = process, batch

    def timed_calls(self, count: int) -> list[float]:
        return self._process.timed_calls(self._batch, count)


def onnxruntime_dense(model, threads: int) -> Callable[[np.ndarray], object] | None:
    """The dense graph's forward in onnxruntime, or None where onnx or onnxruntime is
    missing."""
    try:
        from models.skip.onnx_export import export_dense_onnx, ort_session
    except ImportError:
        return None
    session = ort_session(export_dense_onnx(model), threads=threads)
    return lambda x: session.run(None, {"x": x})


def fastest(candidates: dict[str, float | None]) -> tuple[str, float]:
    """The name and ms of the fastest dense implementation timed."""
    timed = {name: ms for name, ms in candidates.items() if ms is not None}
    name = min(timed, key=timed.__getitem__)
    return name, timed[name]
