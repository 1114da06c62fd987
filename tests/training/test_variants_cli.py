"""sparsegate-variants: one model re-calibrated to several densities, each its own model."""

from __future__ import annotations

import json

import torch

from models.gated_artifact import load_gated_network, save_gated_network
from models.gated_config import preset
from models.gated_network import GatedNetwork
from training.variants_cli import main, variant_name


def test_variants_hold_the_densities_asked_for(tmp_path):
    torch.manual_seed(0)
    save_gated_network(GatedNetwork(preset("blocks", input_size=64)), tmp_path, "b", 1)
    assert main(["--model-repository", str(tmp_path), "--name", "b", "--data", "digits",
                 "--densities", "1,0.25"]) == 0
    assert variant_name("b", 0.25) == "b-d25"
    for name, density in (("b-d100", 1.0), ("b-d25", 0.25)):
        _model, config = load_gated_network(tmp_path / name / "1")
        measured = config["metrics"]["test_density"]
        # Calibrated on the validation split, measured on the test split: within 0.1.
        assert all(abs(d - density) < 0.1 for d in measured), (name, measured)
        assert config["variant_of"] == {"name": "b", "version": "1"}
    assert json.loads((tmp_path / "b-d100" / "1" / "config.json").read_text())[
        "metrics"]["test_density"] == [1.0, 1.0]
    # Again: the next version, nothing overwritten.
    assert main(["--model-repository", str(tmp_path), "--name", "b", "--data", "digits",
                 "--densities", "0.25"]) == 0
    assert (tmp_path / "b-d25" / "2" / "config.json").is_file()


def test_a_missing_model_is_a_clear_error(tmp_path, capsys):
    assert main(["--model-repository", str(tmp_path), "--name", "nope"]) == 1
    assert "no published version of 'nope'" in capsys.readouterr().err


def test_bfloat16_variants_are_rounded_and_say_what_the_rounding_cost(tmp_path):
    torch.manual_seed(1)
    save_gated_network(GatedNetwork(preset("blocks", input_size=64)), tmp_path, "b", 1)
    assert main(["--model-repository", str(tmp_path), "--name", "b", "--data", "digits",
                 "--densities", "0.25", "--block-weights", "bfloat16"]) == 0
    assert variant_name("b", 0.25, "bfloat16") == "b-d25-bf16"
    model, config = load_gated_network(tmp_path / "b-d25-bf16" / "1")
    assert config["block_weights"] == "bfloat16" and model.block_weights == "bfloat16"
    weight = model.layers[1].main.weight
    assert torch.equal(weight, weight.to(torch.bfloat16).float())
    metrics = config["metrics"]
    assert 0 <= metrics["test_error"] <= 1 and 0 <= metrics["test_error_float32_weights"] <= 1
    # The source model stays float32: its own variants are not rounded.
    source, _ = load_gated_network(tmp_path / "b" / "1")
    assert source.block_weights == "float32"
    assert not torch.equal(source.layers[1].main.weight, weight)
