"""The dense baselines of the CPU skip benchmark: the same network computed densely (every
block, no gater) by every implementation this machine has, so that the skipping forward is read
against the fastest of them, not a convenient one.

- `torch`: `benchmarks.cases.dense_forward`, timed beside the skip path in each row;
- `openblas`: numpy's BLAS in this process, at torch's thread count;
- `openblas-fresh`: numpy's BLAS in a fresh process started without OPENBLAS_CORETYPE and
  OPENBLAS_L2_SIZE (`benchmarks.dense_blas`), which, set, pin OpenBLAS's kernels;
- `onnxruntime`: the dense ONNX graph (`models.skip.onnx_export.export_dense_onnx`) in
  onnxruntime at torch's thread count, where onnx and onnxruntime are installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from . import dense_numpy
from .timing import median_ms

BLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
ROOT = Path(__file__).resolve().parents[1]


def blas_in_fresh_process(model, batches, *, threads: int, warmup: int, repeats: int,
                          seed: int) -> tuple[dict[int, float], list[dict]]:
    """Median ms per batch of the dense network through numpy's BLAS in a new process without
    the OPENBLAS_ overrides, and what threadpoolctl says of that BLAS."""
    with tempfile.TemporaryDirectory() as folder:
        layers = Path(folder) / "layers.npz"
        dense_numpy.save(dense_numpy.dense_layers(model), layers)
        env = {key: value for key, value in os.environ.items() if key not in BLAS_OVERRIDES}
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.dense_blas", str(layers),
             "--batches", ",".join(str(b) for b in batches), "--threads", str(threads),
             "--warmup", str(warmup), "--repeats", str(repeats), "--seed", str(seed)],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"benchmarks.dense_blas failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout)
    return {int(batch): ms for batch, ms in result["ms"].items()}, result["blas"]


def onnxruntime_dense(model, threads: int) -> Callable[[np.ndarray], object] | None:
    """The dense graph's forward in onnxruntime, or None where onnx or onnxruntime is
    missing."""
    try:
        from models.skip.onnx_export import export_dense_onnx, ort_session
    except ImportError:
        return None
    session = ort_session(export_dense_onnx(model), threads=threads)
    return lambda x: session.run(None, {"x": x})


def openblas_and_onnxruntime_ms(numpy_dense: Callable[[np.ndarray], object],
                                ort_dense: Callable[[np.ndarray], object] | None,
                                x: np.ndarray, *, threads: int, warmup: int, repeats: int
                                ) -> tuple[float, float | None]:
    """Median ms of the dense network on x through numpy's OpenBLAS in this process (at
    `threads`: the engine leaves OpenBLAS single-threaded) and through onnxruntime's dense graph
    (None where it is absent), one after the other: OpenBLAS's worker threads keep spinning
    for ~0.1 s after its multi-threaded products and would slow whatever ran beside them."""
    with threadpool_limits(threads, user_api="blas"):
        openblas = median_ms({"dense": lambda: numpy_dense(x)}, warmup=warmup,
                             repeats=repeats, rounds=1)["dense"]
    time.sleep(0.25)  # let those threads park
    onnx = None if ort_dense is None else median_ms(
        {"dense": lambda: ort_dense(x)}, warmup=warmup, repeats=repeats, rounds=1)["dense"]
    return openblas, onnx


def fastest(candidates: dict[str, float | None]) -> tuple[str, float]:
    """The name and ms of the fastest dense implementation timed."""
    timed = {name: ms for name, ms in candidates.items() if ms is not None}
    name = min(timed, key=timed.__getitem__)
    return name, timed[name]
