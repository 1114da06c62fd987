"""The layer plan the skipping backends share."""

from models.skip.plan import plan_layers

from ..tiny_networks import tiny_network

GATED = {"blocks": 4, "block_size": 2, "gater_hidden": 0, "activation": "relu"}
DENSE = {"blocks": 6, "block_size": 1, "activation": "tanh", "gated": False}


def test_the_plan_says_who_reads_a_gated_layers_blocks():
    model = tiny_network([GATED, GATED, DENSE, GATED])
    plan = plan_layers(model)
    assert [p.index for p in plan] == [0, 1, 2, 3, 4]
    assert [p.gated is not None for p in plan] == [True, True, False, True, False]
    assert [p.readout for p in plan] == [False] * 4 + [True]
    assert plan[0].reads_blocks_of is None
    assert plan[1].reads_blocks_of is model.layers[0].config  # gated after gated
    assert plan[2].reads_blocks_of is model.layers[1].config  # dense after gated
    assert plan[3].reads_blocks_of is None  # gated after dense
    assert plan[4].reads_blocks_of is model.layers[3].config  # the read-out
    assert [p.read_by_gated for p in plan] == [True, False, False, False, False]
    assert [p.reader_width for p in plan] == [None, 6, None, 4, None]
    assert [p.activation for p in plan] == ["relu", "relu", "tanh", "relu", "linear"]
    assert plan[4].linear is model.readout


def test_each_planned_layer_names_its_weights_as_the_state_dict_does():
    model = tiny_network([GATED, DENSE, GATED])
    state = model.state_dict()
    for step in plan_layers(model):
        assert state[f"{step.path}.weight"] is step.linear.weight.data or (
            state[f"{step.path}.weight"].data_ptr() == step.linear.weight.data_ptr())
    assert [step.path for step in plan_layers(model)] == [
        "layers.0.main", "layers.1.main", "layers.2.main", "readout"]
