"""A short sweep end to end: a real server, locust headless per cell, every output written."""

from __future__ import annotations

import json

import torch

from loadtest.cli import main
from models.gated_artifact import save_gated_network
from models.gated_config import GatedNetworkConfig
from models.gated_network import GatedNetwork


def family(repository, name="tiny"):
    torch.manual_seed(0)
    model = GatedNetwork(GatedNetworkConfig.from_dict({
        "input_size": 64, "num_classes": 10, "target_density": 0.1, "layers": [
            {"blocks": 8, "block_size": 64, "gater_hidden": 8, "activation": "relu"}]}))
    for density, threshold in ((100, -1e30), (10, 1.0)):
        model.set_thresholds([threshold])
        save_gated_network(model, repository, f"{name}-d{density}", 1)


def test_sweep_writes_rows_plot_and_report(tmp_path):
    family(tmp_path / "repo")
    doc = tmp_path / "docs" / "loadtest.md"
    code = main(["sweep", "--model-repository", str(tmp_path / "repo"), "--family", "tiny",
                 "--densities", "100,10", "--users", "2", "--rate", "20", "--rate-users", "2",
                 "--seconds", "2", "--protocol", "both", "--out", str(tmp_path / "out"),
                 "--report", str(doc)])
    assert code == 0
    rows = json.loads((tmp_path / "out" / "sweep.json").read_text())["rows"]
    assert [(r["density"], r["mode"]) for r in rows] == [
        (1.0, "users"), (1.0, "rate"), (0.1, "users"), (0.1, "rate")]
    for row in rows:
        assert row["requests"] > 0 and row["failures"] == 0, row
        assert row["server_requests"] > 0 and row["server_total_ms_p50"] > 0
    dense, sparse = rows[0], rows[2]
    assert dense["server_saved_fraction"] < 0 < sparse["server_saved_fraction"]
    assert (tmp_path / "out" / "sweep.png").stat().st_size > 10_000
    assert "loadtest-sweep:begin" in doc.read_text() and doc.with_suffix(".png").is_file()


def test_sweep_says_which_model_is_missing(tmp_path, capsys):
    family(tmp_path / "repo")
    code = main(["sweep", "--model-repository", str(tmp_path / "repo"), "--family", "tiny",
                 "--densities", "100,50", "--seconds", "1"])
    assert code == 1
    assert "tiny-d50" in capsys.readouterr().err
