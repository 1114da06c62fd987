"""The ONNX benchmark exports through the CLI, checks ORT against torch and times both graphs."""

import pytest

from benchmarks.cases import LAYER_CASE
from benchmarks.onnx_cases import rows

FIELDS = {"device", "backend", "case", "batch", "density", "realised_density", "dense_ms",
          "skip_ms", "speedup", "dense_threads", "skip_threads"}


def test_rows_have_the_documented_fields():
    out = rows(0, 1, 0, batches=(1, 8), densities=(1.0, 0.1), cases=(LAYER_CASE,))
    assert len(out) == 4
    assert all(set(r) >= FIELDS and r["speedup"] > 0 and r["backend"] == "onnxruntime"
               for r in out)
    by_key = {(r["batch"], r["density"]): r for r in out}
    assert by_key[(1, 1.0)]["realised_density"] == 1.0
    # Batch 1 at 10 %: the threshold leaves 6 of 64 blocks on, and the graph
    # computes exactly those (the union path).
    one = by_key[(1, 0.1)]
    assert 0.09 <= one["realised_density"] <= 0.11
    assert one["computed_density"] == one["realised_density"]
    assert by_key[(8, 0.1)]["computed_density"] == 1.0  # union ~57 %: the dense fallback


def test_rows_of_the_graph_on_sparsegate_operators():
    from models.skip import onnx_ops

    if not onnx_ops.available():
        pytest.skip("sparsegate's onnxruntime operators need a C compiler")
    out = rows(0, 1, 0, batches=(8,), densities=(0.1,), cases=(LAYER_CASE,), custom_ops=True)
    (row,) = out
    assert set(row) >= FIELDS and row["backend"] == "onnxruntime-ops"
    # Pair by pair at any batch: each example computes exactly its own blocks.
    assert row["computed_density"] == row["realised_density"]


def test_anatomy_parts_are_checked_and_count_the_selected_rows(monkeypatch):
    from benchmarks import onnx_anatomy

    out = onnx_anatomy.rows(0.1, warmup=0, repeats=1, seed=0)
    parts = {(r["part"], r["threads"]): r for r in out}
    assert set(parts) == {("dense", 1), ("dense", 2), ("skip", 1), ("gater", 1),
                          ("gather", 1), ("union", 1), ("oracle", 1)}
    selected = parts[("skip", 1)]["selected_blocks"]
    assert 6 <= selected <= 7  # 10 % of 64 blocks, by the quantile threshold
    # Rows of W1 (1024 floats), of W2.T (1024) and a bias, 64 per block, plus the gater.
    gater = (1024 * 64 + 64 + 64 * 64 + 64) * 4
    assert parts[("gater", 1)]["bytes"] == gater
    assert parts[("oracle", 1)]["bytes"] == selected * 64 * 2049 * 4 + gater
    assert all(r["ms"] > 0 and r["dense_ms"] == min(parts[("dense", 1)]["ms"],
                                                     parts[("dense", 2)]["ms"]) for r in out)
    # A part that computes the wrong thing (the oracle holding other blocks' rows) is refused
    # before it is timed.
    part = onnx_anatomy._part
    monkeypatch.setattr(onnx_anatomy, "_part", lambda model, selected, name: part(
        model, (selected + 1) % 64, name))
    with pytest.raises(AssertionError):
        onnx_anatomy.rows(0.1, warmup=0, repeats=1, seed=0)
