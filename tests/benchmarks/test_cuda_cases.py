"""The GPU benchmark's case code runs end to end at a tiny size.

Without a GPU the Triton kernels run in the interpreter on CPU (TRITON_INTERPRET=1 set here,
before triton is imported) and only the correctness checks and row fields mean anything; with
one, the same tiny case runs on CUDA, CUDA graphs included.
"""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
DEVICE = "cpu" if os.environ.get("TRITON_INTERPRET") == "1" else "cuda"

pytest.importorskip("triton")

from benchmarks import cuda_cases  # noqa: E402

FIELDS = {"device", "backend", "case", "batch", "density", "realised_density", "dense_ms",
          "skip_ms", "speedup", "dense_baseline", "max_rel_error", "path"}


def test_case_rows_check_and_time_every_batch_and_density():
    rows = cuda_cases.case_rows(DEVICE, 0, 1, 0, d_in=32, blocks=4, block_size=16, d_out=24,
                                batches=(1, 17), densities=(1.0, 0.25),
                                dtype=torch.float32, case="tiny")
    backends = ("triton", "triton-graph") if DEVICE == "cuda" else ("triton",)
    assert len(rows) == 2 * 2 * len(backends)
    assert all(set(r) >= FIELDS and r["speedup"] > 0 for r in rows)
    assert {r["backend"] for r in rows} == set(backends)
    assert {r["path"] for r in rows} == {"gemv", "grouped"}
    assert all(r["max_rel_error"] <= cuda_cases.TOLERANCE[torch.float32] for r in rows)
    dense = [r for r in rows if r["density"] == 1.0]
    assert all(r["realised_density"] == 1.0 for r in dense)


def test_calibration_variants_are_checked_and_timed_where_they_apply():
    rows = cuda_cases.case_rows(DEVICE, 0, 1, 0, d_in=32, blocks=4, block_size=16, d_out=24,
                                batches=(1, 9), densities=(0.5,), dtype=torch.float32,
                                calibrate=True)
    by_backend = {(r["backend"], r["batch"]): r["path"] for r in rows}
    assert by_backend[("triton", 1)] == "gemv"
    assert by_backend[("triton", 9)] == "grouped"
    assert by_backend[("triton-gemv", 9)] == "gemv"
    assert ("triton-no-route", 9) in by_backend
    assert ("triton-no-route", 1) not in by_backend


def test_the_batch_route_is_timed_against_the_forward_without_it(monkeypatch):
    from models.skip import cuda as gpu_skip

    monkeypatch.setattr(gpu_skip, "BATCH_ROUTE_MIN_BATCH", 9)
    rows = cuda_cases.case_rows(DEVICE, 0, 1, 0, d_in=32, blocks=4, block_size=16, d_out=24,
                                batches=(3, 9), densities=(0.25,), dtype=torch.float32)
    computed = {(r["backend"], r["batch"]): r["computed_density"] for r in rows}
    assert ("triton-no-batch-route", 3) not in computed
    assert computed[("triton", 9)] == 1.0  # a quarter of the pairs on: every block runs
    assert computed[("triton-no-batch-route", 9)] < 1.0


def test_a_wrong_result_is_refused_before_timing(monkeypatch):
    monkeypatch.setitem(cuda_cases.TOLERANCE, torch.float32, -1.0)  # nothing passes
    with pytest.raises(AssertionError, match="relative error"):
        cuda_cases.case_rows(DEVICE, 0, 1, 0, d_in=32, blocks=4, block_size=16, d_out=24,
                             batches=(3,), densities=(0.5,), dtype=torch.float32)


@pytest.mark.skipif(torch.cuda.is_available(), reason="has CUDA")
def test_rows_need_cuda():
    with pytest.raises(RuntimeError, match="CUDA"):
        cuda_cases.rows(0, 1, 0)
