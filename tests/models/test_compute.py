"""Compute accounting against counts derived independently from weight shapes."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from models.compute import (
    ComputeReports,
    active_blocks_of,
    compute_reports,
    dense_macs,
    executed_macs,
    gater_macs,
)
from models.gated_config import GatedNetworkConfig, preset
from models.gated_network import GatedNetwork


def test_the_papers_sizes_cost_what_design_md_says():
    config = preset("paper")
    assert gater_macs(config) == 784 * 400 + 400 * 2000  # 1.11 M
    assert dense_macs(config) == 784 * 2000 + 2000 * 10  # 1.57 M main path + read-out
    (report,) = compute_reports(config, torch.tensor([[200]]))  # 10 % of gates on
    assert report.executed_macs == 784 * 400 + 400 * 2000 + 784 * 200 + 200 * 10
    assert report.saved_fraction == pytest.approx(0.20, abs=0.01)  # still ~80 % of dense


def stack_config():
    return GatedNetworkConfig.from_dict({
        "input_size": 10, "num_classes": 3, "target_density": 0.5, "layers": [
            {"blocks": 4, "block_size": 3, "gater_hidden": 5, "activation": "relu"},
            {"blocks": 6, "block_size": 1, "activation": "relu", "gated": False},
            {"blocks": 5, "block_size": 2, "gater_hidden": 0, "activation": "relu"},
        ]})


def gated_gated_config():
    return GatedNetworkConfig.from_dict({
        "input_size": 7, "num_classes": 2, "target_density": 0.5, "layers": [
            {"blocks": 4, "block_size": 3, "gater_hidden": 5, "activation": "relu"},
            {"blocks": 5, "block_size": 2, "gater_hidden": 0, "activation": "tanh"},
        ]})


def count_by_hand(model: GatedNetwork, masks: list[torch.Tensor],
                  routed_dense: tuple[bool, ...] = (False, False),
                  gated_reads_all_inputs: bool = False) -> int:
    """MACs of one example from the weight sub-matrices it touches, layer by layer: every layer
    reads the rows of the units it computes (a gated layer: the blocks it computes, the active
    ones or all where routed dense) times the columns of the units computed before it (or all
    of them, for a gated layer with `gated_reads_all_inputs`); every gater weight in full."""
    total = sum(p.numel() for name, p in model.named_parameters()
                if ".gater." in name and name.endswith("weight"))
    computed_in = torch.ones(model.config.input_size, dtype=torch.bool)
    g = 0
    for layer in model.layers:
        cfg = layer.config
        if layer.gater is not None:
            mask = torch.ones_like(masks[g]) if routed_dense[g] else masks[g]
            computed_out = mask.repeat_interleave(cfg.block_size)
            columns = torch.ones_like(computed_in) if gated_reads_all_inputs else computed_in
            total += layer.main.weight[computed_out][:, columns].numel()
            g += 1
        else:
            computed_out = torch.ones(cfg.width, dtype=torch.bool)
            total += layer.main.weight[:, computed_in].numel()
        computed_in = computed_out
    return total + model.readout.weight[:, computed_in].numel()


@settings(max_examples=60, deadline=None)
@given(bits=st.lists(st.booleans(), min_size=9, max_size=9),
       routed_dense=st.tuples(st.booleans(), st.booleans()),
       layout=st.sampled_from(["gated-dense-gated", "gated-gated"]),
       reads_all=st.booleans())
def test_executed_macs_match_the_weights_an_example_touches(bits, routed_dense, layout,
                                                            reads_all):
    config = stack_config() if layout == "gated-dense-gated" else gated_gated_config()
    model = GatedNetwork(config)
    masks = [torch.tensor(bits[:4]), torch.tensor(bits[4:])]
    active = torch.tensor([[int(m.sum()) for m in masks]])
    computed = torch.tensor([[4 if routed_dense[0] else int(masks[0].sum()),
                              5 if routed_dense[1] else int(masks[1].sum())]])
    assert int(executed_macs(config, active, computed, gated_reads_all_inputs=reads_all)[0]) \
        == count_by_hand(model, masks, routed_dense, reads_all)
    if not any(routed_dense):
        assert int(executed_macs(config, active)[0]) == count_by_hand(model, masks)


def test_dense_macs_are_the_main_path_and_read_out_weights():
    model = GatedNetwork(stack_config())
    expected = sum(layer.main.weight.numel() for layer in model.layers)
    assert dense_macs(model.config) == expected + model.readout.weight.numel()


def test_all_off_costs_the_gaters_only_and_all_on_costs_dense_plus_gaters():
    config = stack_config()
    none = executed_macs(config, torch.tensor([[0, 0]]))
    full = executed_macs(config, torch.tensor([[4, 5]]))
    # All off: no main-path product runs before the ungated middle layer, which then reads no
    # non-zero input (its output is its bias), so only the gaters cost anything.
    assert int(none[0]) == gater_macs(config)
    assert int(full[0]) == gater_macs(config) + dense_macs(config)


def test_reports_come_per_example_from_a_real_forward():
    config = stack_config()
    model = GatedNetwork(config).eval()
    out = model(torch.randn(7, 10))
    active = active_blocks_of([t.gates for t in out.traces])
    assert active.shape == (7, 2)
    reports = compute_reports(config, active)
    assert len(reports) == 7
    for report, row in zip(reports, active.tolist(), strict=True):
        assert list(report.active_blocks) == row and report.blocks == (4, 5)
        assert report.computed_blocks == report.active_blocks
        assert report.as_dict()["saved_fraction"] == pytest.approx(
            1 - report.executed_macs / report.dense_macs)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        executed_macs(stack_config(), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="no gated layer"):
        active_blocks_of([])


def test_a_batch_of_reports_reads_as_its_examples_one_by_one():
    # The arrays-backed batch against reports made one example at a time: same values, the
    # saved fraction bit for bit (the server writes it into every response).
    config = stack_config()
    rng = np.random.default_rng(0)
    active = rng.integers(0, [5, 6], size=(37, 2))
    computed = np.maximum(active, rng.integers(0, [5, 6], size=(37, 2)))
    batch = compute_reports(config, active, computed)
    alone = [compute_reports(config, active[i:i + 1], computed[i:i + 1])[0] for i in range(37)]
    assert len(batch) == 37 and list(batch) == alone
    assert batch.as_dicts() == [r.as_dict() for r in alone]
    assert [d["saved_fraction"] for d in batch.as_dicts()] == [r.saved_fraction for r in alone]
    assert batch.saved_fractions().tolist() == [r.saved_fraction for r in alone]
    assert batch.active_fractions().tolist() == [sum(r.active_blocks) / 9 for r in alone]
    assert list(batch[5:9]) == alone[5:9] and batch[-1] == alone[-1]
    assert ComputeReports.of(alone) == batch
    # a batch's consecutive parts joined are the batch again, gater counts included
    joined = ComputeReports.joined([batch[:5], batch[5:6], batch[6:]])
    assert joined == batch and joined.gater_macs.tolist() == batch.gater_macs.tolist()


def test_a_batch_of_reports_refuses_mismatched_counts():
    with pytest.raises(ValueError, match="gated layers"):
        ComputeReports(10, 1, (4, 5), np.zeros(3, np.int64), np.zeros((3, 2), np.int64),
                       np.zeros((2, 2), np.int64))
    with pytest.raises(ValueError, match="no reports"):
        ComputeReports.of([])
    with pytest.raises(ValueError, match="no reports"):
        ComputeReports.joined([])
