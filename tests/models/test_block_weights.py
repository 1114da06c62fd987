"""Main-path weights in bfloat16: rounded in place, stored in half the bytes, loaded back exactly,
and refused where config.json and the weights disagree."""

import json

import pytest
import torch

from models.artifact import ArtifactError
from models.block_weights import is_main_weight, round_main_weights
from models.gated_artifact import load_gated_network, save_gated_network
from models.gated_config import GatedNetworkConfig
from models.gated_network import GatedNetwork

CONFIG = {"input_size": 20, "num_classes": 3, "layers": [
    {"blocks": 4, "block_size": 8, "gater_hidden": 5, "activation": "relu"},
    {"blocks": 3, "block_size": 8, "activation": "relu"}]}


def network(seed: int = 0) -> GatedNetwork:
    torch.manual_seed(seed)
    return GatedNetwork(GatedNetworkConfig.from_dict(CONFIG)).eval()


def edit(folder, change) -> None:
    path = folder / "config.json"
    config = json.loads(path.read_text())
    change(config)
    path.write_text(json.dumps(config))


def test_rounding_touches_the_main_weights_only_and_lands_on_bfloat16_numbers():
    model = network()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    round_main_weights(model, "bfloat16")
    main = [k for k in before if is_main_weight(k)]
    assert main == ["layers.0.main.weight", "layers.1.main.weight", "readout.weight"]
    for key, value in model.state_dict().items():
        if key in main:
            assert not torch.equal(value, before[key])
            assert torch.equal(value, value.to(torch.bfloat16).float())
            # Nearest: within half a bfloat16 step (8 significant bits) of the float32 value.
            assert (value - before[key]).abs().le(before[key].abs() * 2.0 ** -8).all()
        else:
            assert torch.equal(value, before[key]), key
    with pytest.raises(ValueError, match="one of float32, bfloat16"):
        round_main_weights(model, "int4")


def test_a_bfloat16_artifact_stores_half_the_main_bytes_and_loads_the_same_network(tmp_path):
    model = round_main_weights(network(), "bfloat16")
    folder = save_gated_network(model, tmp_path, "m", 1)
    plain = save_gated_network(network(), tmp_path, "plain", 1)
    config = json.loads((folder / "config.json").read_text())
    assert config["block_weights"] == "bfloat16"
    assert "block_weights" not in json.loads((plain / "config.json").read_text())
    tensors = config["weights"]["tensors"]
    assert {k for k, v in tensors.items() if v["dtype"] == "bfloat16"} == {
        "layers.0.main.weight", "layers.1.main.weight", "readout.weight"}
    main_floats = 20 * 32 + 32 * 24 + 24 * 3
    assert (plain / "model.safetensors").stat().st_size - (
        folder / "model.safetensors").stat().st_size == 2 * main_floats
    loaded, _ = load_gated_network(folder)
    assert loaded.block_weights == "bfloat16"
    for key, value in model.state_dict().items():
        got = loaded.state_dict()[key]
        assert got.dtype == torch.float32 and torch.equal(got, value), key
    assert load_gated_network(plain)[0].block_weights == "float32"


def test_config_and_weights_that_disagree_on_the_precision_are_refused(tmp_path):
    folder = save_gated_network(round_main_weights(network(), "bfloat16"), tmp_path, "m", 1)
    edit(folder, lambda c: c.pop("block_weights"))  # float32 claimed, bfloat16 stored
    with pytest.raises(ArtifactError, match=r"need 6784 bytes \(float32 main path\)"):
        load_gated_network(folder)
    plain = save_gated_network(network(), tmp_path, "plain", 1)
    edit(plain, lambda c: c.update(block_weights="bfloat16"))  # the other way round
    with pytest.raises(ArtifactError, match=r"'layers\.0\.main\.weight' is float32"):
        load_gated_network(plain)
    edit(plain, lambda c: c.update(block_weights="fp8"))
    with pytest.raises(ArtifactError, match=r"'block_weights' must be one of float32, bfloat16"):
        load_gated_network(plain)
