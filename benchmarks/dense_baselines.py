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
from collections.abc import Callable
from pathlib import Path

import numpy as np

from . import dense_numpy

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


def fastest(candidates: dict[str, float | None]) -> tuple[str, float]:
    """The name and ms of the fastest dense implementation timed."""
    timed = {name: ms for name, ms in candidates.items() if ms is not None}
    name = min(timed, key=timed.__getitem__)
    return name, timed[name]
