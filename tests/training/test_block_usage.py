"""The block-usage report: counts blocks never on and the busiest blocks' share, from a run."""

import json

import pytest
import torch

from models.gated_config import GatedNetworkConfig
from training.block_usage import main, usage_summary
from training.data import load_data
from training.settings import TrainSettings
from training.trainer import Trainer


def test_a_collapsed_layer_and_an_even_one():
    collapsed = torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])  # 2 blocks take all
    even = torch.full((8,), 0.25)
    assert usage_summary(collapsed, 0.25) == {"blocks": 8, "never_on": 6, "busiest_blocks": 2,
                                              "busiest_share": 1.0}
    assert usage_summary(even, 0.25)["busiest_share"] == pytest.approx(0.25)
    assert usage_summary(torch.zeros(8), 0.25)["busiest_share"] == 0.0


def test_the_report_reads_a_run_directory(tmp_path, capsys):
    config = GatedNetworkConfig.from_dict({
        "input_size": 64, "num_classes": 10, "target_density": 0.25,
        "layers": [{"blocks": 8, "block_size": 4, "gater_hidden": 0, "activation": "relu"}]})
    settings = TrainSettings(epochs=0, deterministic_epochs=1, optimizer="adam", lr=0.01)
    run = tmp_path / "run"
    Trainer(config, settings, load_data("digits"), run, progress=False,
            log=lambda *a, **k: None).fit()
    (run / "config.json").write_text(json.dumps({"model": config.to_dict()}))
    assert main([str(run), "--data", "digits"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[-1].startswith("| 1 | 8 | ") and "(2 blocks)" in table[-1], table
    assert main([str(tmp_path / "nothing"), "--data", "digits"]) == 1
