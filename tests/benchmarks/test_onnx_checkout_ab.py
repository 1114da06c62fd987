"""The ONNX checkout A/B exports each case with another commit's exporter and this checkout's,
checks both against torch and times them beside the dense graph."""

import sys
from types import SimpleNamespace

import pytest

from benchmarks import checkout_ab, onnx_checkout_ab
from benchmarks.cases import LAYER_CASE
from models.skip.onnx_export import export_dense_onnx


def test_both_exports_are_timed_beside_the_dense_graph(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))  # import_base prepends the unpacked tree
    base = checkout_ab.import_base("HEAD", tmp_path, "skip.onnx_export")
    assert base.__name__ == f"{checkout_ab.BASE_PACKAGE}.skip.onnx_export"
    assert str(tmp_path) in base.__file__
    (row,) = onnx_checkout_ab.rows(base, [LAYER_CASE], [32], [0.1], warmup=0, repeats=2,
                                   seed=0)
    assert all(row[f"{name}_ms"] > 0 and row[f"{name}_threads"] in (1, 2)
               for name in ("base", "this", "dense"))
    assert row["base_over_this"] == pytest.approx(row["base_ms"] / row["this_ms"])
    assert row["dense_over_this"] == pytest.approx(row["dense_ms"] / row["this_ms"])


def test_a_base_whose_graph_differs_from_torch_is_refused():
    wrong = SimpleNamespace(export_onnx=export_dense_onnx)  # every block on: not the network
    with pytest.raises(RuntimeError, match=r"base, .*differ from torch"):
        onnx_checkout_ab.rows(wrong, [LAYER_CASE], [8], [0.1], warmup=0, repeats=1, seed=0)
