"""The weight-reads benchmark runs end to end: per cell the forward, the read of the same
panels, the fastest dense, and the figures derived from them."""

import json

import pytest

from benchmarks.weight_reads import CELLS, main
from models.skip import c_kernels


@pytest.mark.skipif(c_kernels.load() is None, reason="no C compiler built the kernels")
def test_benchmark_writes_a_row_per_cell_with_its_floor_and_ceiling(tmp_path):
    out = tmp_path / "reads.json"
    main(["--json", str(out), "--warmup", "1", "--repeats", "3", "--targets", "1.0=0.9,0.1=5",
          "--settle-ms", "0"])
    rows = json.loads(out.read_text())["rows"]
    assert [(r["batch"], r["density"]) for r in rows] == list(CELLS)
    for r in rows:
        assert r["weights_bytes"] == 2 * 1024 * 64 * 64 * 4  # both products' 16 MiB panels
        assert r["best_dense_ms"] == min(
            ms for ms in (r["dense_openblas_ms"], r["dense_onnxruntime_ms"]) if ms is not None)
        assert r["floor_ms"] == min(r["read_ms"], r["read_plain_ms"])
        assert r["forward_over_read"] == r["forward_ms"] / r["floor_ms"]
        assert r["read_plain_gb_per_s"] == r["weights_bytes"] / r["read_plain_ms"] / 1e6
        assert r["gates_off_ms"] > 0 and r["products_ms"] == r["forward_ms"] - r["gates_off_ms"]
        assert r["read_one_thread_gb_per_s"] == r["weights_bytes"] / r["read_one_thread_ms"] / 1e6
        assert r["ceiling_vs_best"] == r["best_dense_ms"] / r["floor_ms"]
        assert r["needed_ms"] == r["best_dense_ms"] / {1.0: 0.9, 0.1: 5.0}[r["density"]]


def test_the_engine_with_every_gate_off_computes_no_block_and_leaves_the_model_as_it_was():
    import torch

    from benchmarks.cases import batch_input, layer_model, set_density
    from benchmarks.weight_reads import _every_gate_off

    model = layer_model()
    x = batch_input(model, 8, 0)
    set_density(model, x, 0.1)
    before = [layer.threshold.clone() for layer in model.gated_layers]
    out = _every_gate_off(model).forward_numpy(x.numpy())
    assert out.active_blocks.sum() == out.computed_blocks.sum() == 0
    for layer, threshold in zip(model.gated_layers, before, strict=True):
        assert torch.equal(layer.threshold, threshold)
