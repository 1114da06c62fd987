"""A batch's forward in one C call (`models.skip.batch_program`) equals the dense masked forward
and the Python path's counts, routes as the Python path does, stops where a layer with every
gate on may run dense, and is chosen only where it applies. Every test runs once per
instruction set this CPU runs.

Tolerance on the logits: 1e-4 relative and absolute (float32 sums of up to 4096 terms in
another order); gate values exactly where binary, else 1e-5 relative; block counts exactly.
"""

import numpy as np
import pytest
import torch

from models.block_weights import round_main_weights
from models.skip.cpu import SkipNetwork

from ..tiny_networks import tiny_network
from .kernel_sets import kernel_set, kernels  # noqa: F401 (the fixture)
from .test_lone_program import (
    LAYOUTS,
    VALUED,
    assert_the_python_path_runs,
    callers_that_got_another_result,
    thresholds,
)
from .test_off_blocks_are_never_read import poisoned

pytestmark = pytest.mark.skipif(kernels is None, reason="no C compiler built the kernels")

BATCHES = [2, 3, 7, 17, 64]


def engines(model, threads: int) -> tuple[SkipNetwork, SkipNetwork]:
    """The engine with every product split over `threads` threads however small, and the same
    engine's Python path."""
    in_c = SkipNetwork(model, threads=threads)
    assert in_c._batch is not None
    in_c._batch.threads_from = 0
    python = SkipNetwork(model, threads=threads)
    python._batch = None
    return in_c, python


def check(model, x: torch.Tensor, threads: int = 2) -> list[tuple[int, ...]]:
    """The C forward of x against the dense masked forward (logits, gate values) and the Python
    path (gate values, blocks on and computed); returns the blocks on per example."""
    in_c, python = engines(model, threads)
    got, reference, want = in_c(x), python(x), model(x)
    torch.testing.assert_close(got.logits, want.logits, rtol=1e-4, atol=1e-4)
    binary = model.gated_layers[0].estimator.binary
    for g, r, w in zip(got.gates, reference.gates, [t.gates for t in want.traces], strict=True):
        if binary:
            assert torch.equal(g, r) and torch.equal(g, w)
        else:
            torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)
    assert torch.equal(got.active_blocks, reference.active_blocks)
    assert torch.equal(got.computed_blocks, reference.computed_blocks)
    return [tuple(row) for row in got.active_blocks.tolist()]


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_a_batch_in_c_equals_the_dense_masked_forward(layout, threads, precision):
    model = tiny_network(LAYOUTS[layout], seed=3)
    if precision == "bfloat16":  # the panels then hold bfloat16, read exactly
        round_main_weights(model, "bfloat16")
    x = torch.randn(max(BATCHES), 12, generator=torch.Generator().manual_seed(5))
    seen = set()
    for quantile in (0.0, 0.3, 0.7, 1.0):
        thresholds(model, x, quantile)
        for batch in BATCHES:
            seen.update(check(model, x[:batch], threads))
    blocks = tuple(layer.config.blocks for layer in model.gated_layers)
    assert (0,) * len(blocks) in seen and blocks in seen and len(seen) > 2


@pytest.mark.parametrize("estimator", VALUED)
def test_gates_worth_their_estimators_value_multiply_their_blocks_in_c(estimator):
    model = tiny_network(LAYOUTS["gated-gated"], estimator=estimator, seed=4)
    x = torch.randn(33, 12, generator=torch.Generator().manual_seed(6))
    for quantile in (0.3, 0.7):
        thresholds(model, x, quantile)
        check(model, x)


def test_examples_with_most_blocks_on_compute_them_all_before_a_gated_layer():
    """Before a gated layer an example with at least 3/4 of the blocks on computes every one
    (so the next reads its whole row), one with fewer only its own: counted as computed, and
    the same as the Python path."""
    model = tiny_network([
        {"blocks": 8, "block_size": 64, "gater_hidden": 0, "activation": "relu"},
        {"blocks": 3, "block_size": 64, "gater_hidden": 0, "activation": "relu"}], seed=7)
    x = torch.randn(40, 12, generator=torch.Generator().manual_seed(8))
    thresholds(model, x, 0.25)
    check(model, x)
    out = engines(model, 2)[0](x)
    active, computed = out.active_blocks[:, 0], out.computed_blocks[:, 0]
    most = (active >= 6) & (active < 8)
    assert most.any() and (active < 6).any()
    assert (computed[most] == 8).all() and torch.equal(computed[~most], active[~most])
    never = SkipNetwork(model, dense_from=2.0)(x)  # never routes dense: only the blocks on
    assert torch.equal(never.computed_blocks, never.active_blocks)
    torch.testing.assert_close(never.logits, model(x).logits, rtol=1e-4, atol=1e-4)


def test_a_gated_layer_reads_whole_rows_and_part_read_ones_in_one_batch():
    """After a gated layer, examples that computed every block there and examples that
    computed some, in one batch: equal to the dense masked forward."""
    model = tiny_network([
        {"blocks": 3, "block_size": 64, "gater_hidden": 0, "activation": "relu"},
        {"blocks": 4, "block_size": 64, "gater_hidden": 8, "activation": "relu"}], seed=5)
    first, second = model.gated_layers
    x = torch.randn(40, 12, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():  # half the examples get every first-layer gate on, half about half
        first.gater.out.bias.fill_(0.0)
        first.gater.out.weight.copy_(first.gater.out.weight.abs() * 6.0)
        x[:20] = x[:20].abs()
        x[20:] = x[20:] * torch.where(torch.arange(12) % 2 == 0, 1.0, -1.0)
    first.threshold.fill_(0.0)
    second.threshold.fill_(-1e9)
    active = torch.tensor(check(model, x))[:, 0]
    assert (active == 3).any() and (active < 3).any()


@pytest.mark.parametrize("seed", range(3))
def test_a_batch_in_c_never_reads_the_weights_of_blocks_off_for_all_of_it(seed):
    """Blocks off for every example of the batch own NaN weights (their rows, and the next
    layer's columns reading them): one read would make the logits NaN or wrong. (Checked to
    fail with the default routing, which computes the off block of an example with 3 of 4
    on.)"""
    model = tiny_network(LAYOUTS["gated-gated"], seed=seed)
    x = torch.randn(64, 12, generator=torch.Generator().manual_seed(seed))
    thresholds(model, x, 0.5)
    chosen = []  # examples that leave, together, a block off in every layer
    for i in range(x.shape[0]):
        with torch.no_grad():
            traces = model(x[[*chosen, i]]).traces
        if all(bool(((t.gates != 0).sum(0) == 0).any()) for t in traces):
            chosen.append(i)
    assert len(chosen) >= 2, "too few examples sharing an off block in every layer"
    batch = x[chosen[:4]]
    # Never routed dense: by default an example with 3 of the first layer's 4 blocks on
    # computes the fourth too (counted as computed), and would read its weights.
    engine = SkipNetwork(poisoned(model, batch), dense_from=2.0)
    engine._batch.threads_from = 0
    got = engine(batch).logits
    assert torch.isfinite(got).all(), "an off block's weights were read"
    torch.testing.assert_close(got, model(batch).logits, rtol=1e-4, atol=1e-4)


def test_it_stops_at_a_binary_layer_with_every_gate_on_where_asked():
    model = tiny_network(LAYOUTS["gated-gated"], seed=8)
    x = torch.randn(9, 12, generator=torch.Generator().manual_seed(2)).numpy()
    for layer in model.gated_layers:
        layer.threshold.fill_(-1e9)
    program = SkipNetwork(model)._batch
    assert program.run(x, stop_all_on=True) is None
    logits, counts, gates = program.run(x, stop_all_on=False)
    torch.testing.assert_close(torch.from_numpy(logits), model(torch.from_numpy(x)).logits,
                               rtol=1e-4, atol=1e-4)
    assert counts.tolist() == [[[4, 3]] * 9] * 2 and all((g == 1).all() for g in gates)


def test_numpy_inputs_give_numpy_outputs_equal_to_the_tensor_forward():
    model = tiny_network(LAYOUTS["gated-gated"], seed=4)
    x = torch.randn(5, 12, generator=torch.Generator().manual_seed(1))
    thresholds(model, x, 0.5)
    skip = SkipNetwork(model)
    tensors, arrays = skip(x), skip.forward_numpy(x.numpy())
    assert torch.equal(tensors.logits, torch.from_numpy(arrays.logits))
    assert isinstance(arrays.logits, np.ndarray)
    assert arrays.active_blocks.shape == arrays.computed_blocks.shape == (5, 2)
    assert [g.shape for g in arrays.gates] == [(5, 4), (5, 3)]


def test_concurrent_callers_each_get_their_own_forward():
    model = tiny_network(LAYOUTS["gated-gated"], seed=5)
    x = torch.randn(48, 12, generator=torch.Generator().manual_seed(2))
    thresholds(model, x, 0.5)
    assert callers_that_got_another_result(engines(model, 2)[0], list(x.split(6)), 30) == []


@pytest.mark.parametrize(("layers", "why"), [
    ([{"blocks": 3, "block_size": 64, "gater_hidden": 0, "activation": "relu"},
      {"blocks": 64, "block_size": 1, "activation": "relu", "gated": False},
      {"blocks": 64, "block_size": 1, "activation": "relu", "gated": False}],
     "a dense layer as wide as the panels reading dense rows"),
    ([{"blocks": 3, "block_size": 32, "gater_hidden": 0, "activation": "relu"}],
     "blocks narrower than the kernels' tiles"),
])
def test_networks_the_batch_forward_does_not_run_take_the_python_path(layers, why):
    assert_the_python_path_runs(tiny_network(layers, seed=6), "_batch", 5, why)


def test_an_engine_that_routes_examples_dense_keeps_the_python_path():
    model = tiny_network(LAYOUTS["gated-gated"], seed=7)
    assert SkipNetwork(model, dense_from=0.5)._batch is None
    assert SkipNetwork(model, dense_from=2.0)._batch is not None
    assert SkipNetwork(model, native=False)._batch is None
