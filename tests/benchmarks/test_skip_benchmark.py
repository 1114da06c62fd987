"""The skip benchmark runs end to end and writes rows with the documented fields and a plot."""

import json

import numpy as np
import pytest
import torch

from benchmarks.cases import dense_forward, set_density, whole_model
from benchmarks.skip import main
from models.skip.cpu import SkipNetwork

FIELDS = {"device", "backend", "case", "batch", "density", "dense_ms", "skip_ms", "speedup"}


def test_benchmark_writes_every_row_and_a_plot(tmp_path):
    out = tmp_path / "skip.json"
    assert main(["--json", str(out), "--warmup", "0", "--repeats", "1", "--quick",
                 "--backends", "torch", "--settle-ms", "0"]) == 0
    payload = json.loads(out.read_text())
    rows = payload["rows"]
    assert len(rows) == 2 * 2 * 2  # 2 cases x batches 1, 8 x densities 1.0, 0.1
    assert all(set(r) >= FIELDS and r["speedup"] > 0 for r in rows)
    assert payload["machine"]["cpu_threads"] >= 1
    # The CPU figures depend on the vector extensions and the C kernels' set: both recorded.
    from models.skip import c_kernels

    kernels = c_kernels.load()
    assert payload["machine"].get("cpu_kernel_set") == (kernels.kernel_set if kernels else None)
    assert isinstance(payload["machine"]["vector_extensions"], list)
    assert out.with_suffix(".png").stat().st_size > 10_000
    # The realised density follows the requested one (thresholds between logits, 64 blocks); at
    # density 1 nothing is saved but the gaters cost something.
    assert all(abs(r["realised_density"] - r["density"]) < 0.02 for r in rows)
    assert all(r["saved_fraction"] < 0 for r in rows if r["density"] == 1.0)
    assert all(r["saved_fraction"] > 0.5 for r in rows if r["density"] == 0.1)
    # Every dense implementation was timed, each read against the skip path through its own
    # interface (torch's against tensors in and out, the others' against numpy arrays), and the
    # baseline is the one the skip path is least faster than; the rates follow from the
    # multiply-adds.
    for r in rows:
        timed = {"openblas": r["dense_openblas_ms"], "openblas-fresh": r["dense_openblas_fresh_ms"],
                 "onnxruntime": r["dense_onnxruntime_ms"]}
        assert all(ms > 0 for ms in timed.values()) and r["skip_numpy_ms"] > 0
        ratios = {name: ms / r["skip_numpy_ms"] for name, ms in timed.items()}
        torch_ms = r["dense_ms"]  # timed in the same rounds as the others
        ratios["torch"] = torch_ms / r["skip_ms"]
        assert r["speedup_vs_best"] == min(ratios.values())
        assert r["best_dense"] == min(ratios, key=ratios.get)
        assert r["skip_best_ms"] == (r["skip_ms"] if r["best_dense"] == "torch"
                                     else r["skip_numpy_ms"])
        assert r["speedup_vs_best"] == r["best_dense_ms"] / r["skip_best_ms"]
        assert r["fastest_dense"] == min({**timed, "torch": torch_ms},
                                         key={**timed, "torch": torch_ms}.get)
        assert r["skip_gmacs"] == r["executed_macs"] / (r["skip_best_ms"] * 1e6)
        assert abs(r["skip_rate_vs_dense"] - r["skip_gmacs"] / r["dense_gmacs"]) < 1e-12
        assert r["fresh_process_blas"]


def test_the_fresh_blas_process_runs_without_the_openblas_overrides(monkeypatch):
    from benchmarks.dense_baselines import FreshProcessBlas
    from benchmarks.dense_numpy import dense_layers, forward
    from benchmarks.timing import SelfTimed

    model = whole_model(0)
    # Set, this pins OpenBLAS to its oldest kernels (threadpoolctl then names them "Katmai").
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Prescott")
    with FreshProcessBlas(dense_layers(model), threads=1, seed=0) as fresh:
        blas = fresh.blas
        for batch in (1, 3):
            timed = fresh.at_batch(batch)
            assert isinstance(timed, SelfTimed)
            ms = timed.timed_calls(2)
            assert len(ms) == 2 and all(m > 0 for m in ms)
        process = fresh._process
    assert process.returncode == 0  # closed, not killed
    assert blas and blas[0]["internal_api"] == "openblas"
    assert blas[0]["architecture"] not in ("Prescott", "Katmai")
    x = np.random.default_rng(0).standard_normal((3, 784), dtype=np.float32)
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(forward(dense_layers(model))(x)),
                                   dense_forward(model)(torch.from_numpy(x)),
                                   rtol=1e-4, atol=1e-4)


def test_cases_take_short_names_and_refuse_unknown_ones(tmp_path, capsys):
    import pytest

    out = tmp_path / "layer.json"
    assert main(["--json", str(out), "--warmup", "0", "--repeats", "1", "--backends", "torch",
                 "--cases", "layer", "--batches", "1", "--densities", "1.0",
                 "--settle-ms", "0"]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["case"] for r in rows] == ["layer-1024-64x64-1024"]
    with pytest.raises(SystemExit):
        main(["--cases", "layr", "--backends", "torch"])
    assert "unknown case(s) ['layr']" in capsys.readouterr().err


def test_set_density_reaches_the_density_in_every_gated_layer():
    import torch

    model = whole_model(0)
    x = torch.randn(32, 784)
    set_density(model, x, 0.25)
    active = SkipNetwork(model)(x).active_blocks.float().mean(0) / 64
    assert torch.allclose(active, torch.tensor([0.25, 0.25]), atol=0.01)


def test_report_renders_tables_and_updates_only_between_markers(tmp_path):
    from benchmarks.skip_report import main as report

    out = tmp_path / "run.json"
    out.write_text(json.dumps({"machine": {"processor": "cpu", "cpu_threads": 2}, "rows": [
        {"device": "cpu", "backend": "torch", "case": "c", "batch": b, "density": d,
         "dense_ms": 2.0, "skip_ms": 1.0, "speedup": 2.0} for b in (1, 8) for d in (1.0, 0.1)]}))
    doc = tmp_path / "doc.md"
    doc.write_text("before\n<!-- skip-tables:run:begin -->\nold\n<!-- skip-tables:run:end -->\n"
                   "after\n")
    assert report([str(out), "--update", str(doc)]) == 0
    text = doc.read_text()
    assert text.startswith("before\n") and text.endswith("after\n") and "old" not in text
    assert "| 8 | 2.00x (2 / 1) | 2.00x (2 / 1) |" in text


def test_changing_inputs_are_timed_beside_the_one_input(tmp_path):
    """With --inputs N the skip path cycles through N input batches, and the one input is
    timed again and again in the same rounds; without it neither field appears."""
    from benchmarks import cpu_cases

    out = cpu_cases.rows(0, 2, 0, batches=(1, 3), densities=(0.1,),
                         cases=(cpu_cases.LAYER_CASE,), inputs=4, settle_s=0)
    assert [r["batch"] for r in out] == [1, 3]
    assert all(r["inputs"] == 4 and r["skip_one_input_ms"] > 0 and r["skip_ms"] > 0
               for r in out)
    plain = cpu_cases.rows(0, 1, 0, batches=(1,), densities=(0.1,),
                           cases=(cpu_cases.LAYER_CASE,), settle_s=0)
    assert plain[0]["inputs"] == 1 and "skip_one_input_ms" not in plain[0]
    with pytest.raises(ValueError, match="inputs"):
        cpu_cases.rows(0, 1, 0, batches=(1,), densities=(0.1,), inputs=0)


def test_bfloat16_rows_round_the_network_and_time_torchs_bfloat16_dense_too():
    from benchmarks import cpu_cases

    out = cpu_cases.rows(0, 1, 0, batches=(2,), densities=(0.1,),
                         cases=(cpu_cases.LAYER_CASE,), block_weights="bfloat16", settle_s=0)
    row = out[0]
    assert row["block_weights"] == "bfloat16" and row["dense_torch_bfloat16_ms"] > 0
    assert row["speedup_vs_best"] == row["best_dense_ms"] / row["skip_best_ms"]
    assert row["speedup_vs_best"] <= row["dense_torch_bfloat16_ms"] / row["skip_ms"]
    plain = cpu_cases.rows(0, 1, 0, batches=(2,), densities=(0.1,),
                           cases=(cpu_cases.LAYER_CASE,), settle_s=0)
    assert plain[0]["block_weights"] == "float32" and "dense_torch_bfloat16_ms" not in plain[0]


def test_a_failing_fresh_blas_process_says_why():
    from benchmarks.dense_baselines import FreshProcessBlas
    from benchmarks.dense_numpy import dense_layers

    with (FreshProcessBlas(dense_layers(whole_model(0)), threads=1, seed=0) as fresh,
          pytest.raises(RuntimeError, match=r"(?s)dense_blas stopped \(exit 1\).*ValueError")):
        fresh.at_batch(-1).timed_calls(1)
