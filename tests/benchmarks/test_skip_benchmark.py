"""The skip benchmark runs end to end and writes rows with the documented fields and a plot."""

import json

from benchmarks.cases import set_density, whole_model
from benchmarks.skip import main
from models.skip.cpu import SkipNetwork

FIELDS = {"device", "backend", "case", "batch", "density", "dense_ms", "skip_ms", "speedup"}


def test_benchmark_writes_every_row_and_a_plot(tmp_path):
    out = tmp_path / "skip.json"
    assert main(["--json", str(out), "--warmup", "0", "--repeats", "1", "--quick",
                 "--backends", "torch"]) == 0
    payload = json.loads(out.read_text())
    rows = payload["rows"]
    assert len(rows) == 2 * 2 * 2  # 2 cases x batches 1, 8 x densities 1.0, 0.1
    assert all(set(r) >= FIELDS and r["speedup"] > 0 for r in rows)
    assert payload["machine"]["cpu_threads"] >= 1
    assert out.with_suffix(".png").stat().st_size > 10_000
    # The realised density follows the requested one (quantile thresholds, 64 blocks); at
    # density 1 nothing is saved but the gaters cost something.
    assert all(abs(r["realised_density"] - r["density"]) < 0.02 for r in rows)
    assert all(r["saved_fraction"] < 0 for r in rows if r["density"] == 1.0)
    assert all(r["saved_fraction"] > 0.5 for r in rows if r["density"] == 0.1)


def test_cases_take_short_names_and_refuse_unknown_ones(tmp_path, capsys):
    import pytest

    out = tmp_path / "layer.json"
    assert main(["--json", str(out), "--warmup", "0", "--repeats", "1", "--backends", "torch",
                 "--cases", "layer", "--batches", "1", "--densities", "1.0"]) == 0
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
