"""The ONNX benchmark exports through the CLI, checks ORT against torch and times both graphs."""

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
    # Batch 1 at 10 %: the quantile threshold leaves 6 or 7 of 64 blocks on, and the graph
    # computes exactly those (the union path).
    one = by_key[(1, 0.1)]
    assert 0.09 <= one["realised_density"] <= 0.11
    assert one["computed_density"] == one["realised_density"]
    assert by_key[(8, 0.1)]["computed_density"] == 1.0  # union ~57 %: the dense fallback
