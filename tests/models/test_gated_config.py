"""Gated-network configs: validation that names the field, presets, and the model they build."""

import pytest
import torch

from models.gated_config import ConfigError, GatedLayerConfig, GatedNetworkConfig, preset
from models.gated_network import GatedNetwork


def tiny(**changes):
    base = {"input_size": 12, "num_classes": 3,
            "layers": [{"blocks": 4, "block_size": 2, "gater_hidden": 5, "activation": "relu"}]}
    base.update(changes)
    return GatedNetworkConfig.from_dict(base)


@pytest.mark.parametrize(("changes", "field"), [
    ({"input_size": 0}, "input_size"),
    ({"num_classes": 1}, "num_classes"),
    ({"layers": []}, "layers"),
    ({"layers": [{"blocks": 0}]}, r"layers\[0\].blocks"),
    ({"layers": [{"blocks": 4, "block_size": -1}]}, r"layers\[0\].block_size"),
    ({"layers": [{"blocks": 4, "gater_hidden": 1.5}]}, r"layers\[0\].gater_hidden"),
    ({"layers": [{"blocks": 4, "activation": "gelu"}]}, r"layers\[0\].activation"),
    ({"layers": [{"blocks": 4, "wings": 2}]}, r"layers\[0\]: unknown field\(s\) wings"),
    ({"estimator": "magic"}, "estimator must be one of"),
    ({"estimator": "reinforce", "estimator_settings": {"decay": 2}}, "estimator_settings"),
    ({"target_density": 0.0}, "target_density"),
    ({"target_density": float("nan")}, "target_density"),
    ({"colour": "red"}, r"unknown field\(s\) colour"),
    ({"estimator": "disarm", "layers": [{"blocks": 4}, {"blocks": 4}]}, "disarm"),
])
def test_invalid_configs_name_the_field(changes, field):
    with pytest.raises(ConfigError, match=field):
        tiny(**changes)


def test_round_trips_through_a_dict():
    config = tiny(estimator="sts", estimator_settings={"beta_noise": [2, 2]})
    assert GatedNetworkConfig.from_dict(config.to_dict()) == config


def test_paper_preset_is_the_papers_conditional_layer():
    config = preset("paper")
    (layer,) = config.layers
    assert (config.input_size, config.num_classes, config.target_density) == (784, 10, 0.1)
    assert (layer.blocks, layer.block_size, layer.gater_hidden, layer.activation) == (
        2000, 1, 400, "linear")
    model = GatedNetwork(config)
    gater = model.layers[0].gater
    assert gater.hidden.weight.shape == (400, 784) and gater.out.weight.shape == (2000, 400)
    assert model.layers[0].main.weight.shape == (2000, 784)


def test_blocks_preset_gater_is_cheap_next_to_the_main_path():
    config = preset("blocks")
    assert [(layer.blocks, layer.block_size) for layer in config.layers] == [(64, 64), (64, 64)]
    model = GatedNetwork(config)
    gater = sum(p.numel() for p in model.gater_parameters())
    main = sum(layer.main.weight.numel() for layer in model.layers)
    assert gater < 0.05 * main


def test_dense_presets_have_no_gates():
    for name, width in (("dense-200-sigmoid", 200), ("dense-2000-relu", 2000)):
        model = GatedNetwork(preset(name))
        assert not model.gated_layers and model.readout.in_features == width


def test_unknown_preset_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="valid: paper, blocks"):
        preset("huge")


@pytest.mark.parametrize("estimator", ["st", "reinforce", "sts", "hard-concrete"])
def test_gaters_start_at_the_target_density(estimator):
    config = tiny(estimator=estimator, target_density=0.2,
                  layers=[GatedLayerConfig(blocks=2000, gater_hidden=0)])
    model = GatedNetwork(config)
    est = model.layers[0].estimator
    p = est.on_probability(model.layers[0].gater(torch.zeros(1, 12)))
    torch.testing.assert_close(p, torch.full_like(p, 0.2), atol=1e-4, rtol=0)


def test_training_forward_multiplies_each_block_by_its_gate():
    model = GatedNetwork(tiny()).train()
    x = torch.randn(6, 12)
    layer = model.layers[0]
    out, trace = layer(x, torch.Generator().manual_seed(0))
    main = torch.relu(layer.main(x)).unflatten(-1, (4, 2))
    torch.testing.assert_close(out, (main * trace.gates.unsqueeze(-1)).flatten(-2))
    loss = model(x).logits.sum()
    loss.backward()
    assert layer.main.weight.grad is not None and layer.gater.out.weight.grad is not None


def test_reinforce_gaters_get_no_gradient_from_the_main_path():
    model = GatedNetwork(tiny(estimator="reinforce")).train()
    model(torch.randn(6, 12)).logits.sum().backward()
    assert all(p.grad is None for p in model.gater_parameters())


@pytest.mark.parametrize(("name", "input_size", "most"), [("blocks-narrow", 784, 0.09),
                                                          ("blocks-digits", 64, 0.16)])
def test_block_presets_execute_a_small_share_of_dense_at_their_density(name, input_size, most):
    from models.compute import dense_macs, executed_macs

    config = preset(name, input_size=input_size)
    blocks = [layer.blocks for layer in config.gated_layers]
    on = torch.tensor([[round(config.target_density * k) for k in blocks]])  # (1, G)
    share = float(executed_macs(config, on)[0]) / dense_macs(config)
    assert share < most, share


def test_every_block_on_is_the_same_network_without_gaters():
    config = preset("blocks-narrow", target_density=0.05)
    dense = config.every_block_on()
    assert not dense.gated_layers and dense.target_density == 1.0
    assert [(d.blocks, d.block_size, d.activation) for d in dense.layers] == [
        (g.blocks, g.block_size, g.activation) for g in config.layers]
    model = GatedNetwork(dense)
    assert not model.gater_parameters()
