"""The CPU block-skipping forward equals the dense masked forward for any gate pattern.

Tolerance: 1e-5 absolute and relative on the logits (float32; skipping changes only the order
and the set of zero terms in each sum).
"""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from models.compute import active_blocks_of, compute_reports
from models.gated_config import preset
from models.gated_network import GatedNetwork, density_threshold
from models.skip.c_kernels import TILE
from models.skip.c_kernels import load as load_native
from models.skip.cpu import SkipNetwork
from models.skip.program_stages import gate_value_code

from ..tiny_networks import (
    OVERFLOW,
    off_block_overflow_case,
    overflowing_network,
    tiny_network,
)

ESTIMATORS = ["st", "reinforce", "sts", "noisy-rectifier", "hard-concrete", "noisy-sigmoid"]


LAYOUTS = {
    # gated, dense, gated: the dense layer reads only live columns of the gated one
    "gated-dense-gated": [
        {"blocks": 6, "block_size": 3, "gater_hidden": 5, "activation": "relu"},
        {"blocks": 5, "block_size": 1, "activation": "sigmoid", "gated": False},
        {"blocks": 4, "block_size": 2, "gater_hidden": 0, "activation": "linear"},
    ],
    # gated, gated: each block group of the second reads its examples' live input blocks
    "gated-gated": [
        {"blocks": 6, "block_size": 3, "gater_hidden": 5, "activation": "relu"},
        {"blocks": 4, "block_size": 2, "gater_hidden": 0, "activation": "tanh"},
    ],
    # Blocks as wide as the C kernels' column tile, so the grouped products, the tiles of a
    # gated layer reading a gated one and the pair sums into a 64-wide dense layer run in C
    # where the kernels build (the layouts above run numpy only).
    "c-kernels": [
        {"blocks": 3, "block_size": TILE, "gater_hidden": 5, "activation": "relu"},
        {"blocks": 2, "block_size": TILE, "gater_hidden": 0, "activation": "tanh"},
        {"blocks": TILE, "block_size": 1, "activation": "relu", "gated": False},
    ],
}


def network(estimator: str, seed: int, layout: str = "gated-dense-gated") -> GatedNetwork:
    return tiny_network(LAYOUTS[layout], estimator=estimator, seed=seed)


# Never dense, the default rule, and dense for every example with any block on.
ROUTES = (2.0, None, 1e-6)


def assert_same(model: GatedNetwork, x: torch.Tensor, dense_from: float | None = None) -> None:
    reference = model(x)
    engine = SkipNetwork(model) if dense_from is None else SkipNetwork(model,
                                                                      dense_from=dense_from)
    skipped = engine(x)
    torch.testing.assert_close(skipped.logits, reference.logits, atol=1e-5, rtol=1e-5)
    for got, want in zip(skipped.gates, reference.traces, strict=True):
        torch.testing.assert_close(got, want.gates)
    expected_active = active_blocks_of([t.gates for t in reference.traces])
    assert torch.equal(skipped.active_blocks, expected_active)
    # An example is computed in full at a layer where it has at least dense_from of its blocks
    # on; otherwise exactly its active blocks run.
    blocks = torch.tensor([layer.config.blocks for layer in model.gated_layers])
    routed_dense = expected_active >= engine.dense_fraction(x.shape[0]) * blocks
    expected_computed = torch.where(routed_dense, blocks, expected_active)
    assert torch.equal(skipped.computed_blocks, expected_computed)
    # A C forward's gaters after a gated layer read only the blocks computed there (checked
    # in test_off_blocks_are_never_read.py); its reports count them so.
    assert skipped.reports(model) == compute_reports(
        model.config, expected_active, expected_computed,
        gaters_read_all_inputs=skipped.gaters_read_all_inputs)


@settings(max_examples=80, deadline=None)
@given(estimator=st.sampled_from(ESTIMATORS), seed=st.integers(0, 10_000),
       batch=st.integers(1, 9), layout=st.sampled_from(sorted(LAYOUTS)),
       thresholds=st.lists(st.floats(-3.0, 3.0), min_size=2, max_size=2),
       dense_from=st.sampled_from(ROUTES))
def test_any_gate_pattern_matches_the_dense_masked_forward(estimator, seed, batch, layout,
                                                           thresholds, dense_from):
    model = network(estimator, seed, layout)
    for layer, tau in zip(model.gated_layers, thresholds, strict=True):
        layer.threshold.fill_(float(layer.estimator.logit_threshold(tau)))
    x = torch.randn(batch, 12, generator=torch.Generator().manual_seed(seed))
    assert_same(model, x, dense_from)


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("tau", [1e9, -1e9], ids=["all-off", "all-on"])
@pytest.mark.parametrize("dense_from", ROUTES)
def test_all_off_and_all_on(estimator, tau, dense_from):
    model = network(estimator, 3)
    for layer in model.gated_layers:
        layer.threshold.fill_(float(layer.estimator.logit_threshold(tau)))
    x = torch.randn(5, 12)
    assert_same(model, x, dense_from)
    active = SkipNetwork(model)(x).active_blocks
    if tau > 0:
        assert int(active.sum()) == 0
    elif estimator != "noisy-rectifier":  # a rectifier gate is never on where max(0, a) = 0
        assert active.tolist() == [[6, 4]] * 5


def test_wrong_input_shapes_are_refused():
    with pytest.raises(ValueError, match=r"\(B, 12\)"):
        SkipNetwork(network("st", 0))(torch.randn(3, 7))


def test_a_bad_routing_fraction_is_refused():
    with pytest.raises(ValueError, match="dense_from"):
        SkipNetwork(network("st", 0), dense_from=0.0)


def test_each_example_is_routed_by_its_own_gates_not_its_batch_mates():
    """With a fixed routing fraction, the same example reports the same compute alone and in
    any batch; by default a lone example is routed dense later than one in a batch."""
    model = network("st", 5, "gated-gated")
    x = torch.randn(9, 12, generator=torch.Generator().manual_seed(1))
    engine = SkipNetwork(model, dense_from=0.5)
    together = engine(x).reports(model)
    alone = [engine(x[i:i + 1]).reports(model)[0] for i in range(9)]
    assert together == alone
    default = SkipNetwork(model)
    assert default.dense_fraction(1) > default.dense_fraction(2) == default.dense_fraction(64)
    assert any(r.computed_blocks != r.active_blocks for r in together)  # both routes ran
    assert any(r.computed_blocks == r.active_blocks for r in together)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("dense_from", ROUTES)
@pytest.mark.parametrize("poison", [float("nan"), 3e38], ids=["nan", "overflow"])
def test_one_examples_overflow_leaves_its_batch_mates_alone(layout, dense_from, poison):
    # A server batches callers' requests: one input that is NaN, or finite but large enough
    # for the activations to overflow to inf, must not change another example's logits or
    # compute, wherever it sits in the batch and whichever route the batch takes.
    model = network("sts", 7, layout)
    x = torch.randn(6, 12, generator=torch.Generator().manual_seed(2))
    engine = SkipNetwork(model, dense_from=dense_from)
    clean = engine(x)
    for bad in range(len(x)):
        hostile = x.clone()
        hostile[bad] = poison
        with np.errstate(all="ignore"):  # the poisoned example's own sums overflow
            got = engine(hostile)
        others = torch.arange(len(x)) != bad
        torch.testing.assert_close(got.logits[others], clean.logits[others], atol=1e-5,
                                   rtol=1e-5)
        assert torch.equal(got.computed_blocks[others], clean.computed_blocks[others])
        with np.errstate(all="ignore"):  # the server's path: arrays in and out
            served = engine.forward_numpy(hostile.numpy()).logits
        np.testing.assert_allclose(served[others.numpy()], clean.logits[others].numpy(),
                                   atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("block_size", [3, TILE], ids=["numpy", "c-kernels"])
@pytest.mark.parametrize("dense_from", ROUTES)
def test_a_sum_that_overflows_to_nan_stays_nan_through_a_rectifier(block_size, dense_from):
    # The reference keeps the NaN of +inf + -inf through its rectifier, and so must the
    # engine, so that the logits say the input has no answer (the server refuses it) rather
    # than answering it as if those units were off.
    model = overflowing_network(block_size)
    x = torch.randn(3, 12, generator=torch.Generator().manual_seed(3))
    x[1, :2] = OVERFLOW
    with torch.no_grad():
        want = model(x).logits
    assert torch.isnan(want[1]).all() and torch.isfinite(want[[0, 2]]).all()
    engine = SkipNetwork(model, dense_from=dense_from)
    with np.errstate(all="ignore"):
        for rows in ([1], [0, 1, 2]):  # a lone example, and in a batch
            got = engine(x[rows]).logits
            served = engine.forward_numpy(x[rows].numpy()).logits
            at = rows.index(1)
            assert torch.isnan(got[at]).all() and np.isnan(served[at]).all(), (rows, got)


@pytest.mark.parametrize("block_size", [3, TILE], ids=["numpy", "c-kernels"])
@pytest.mark.parametrize("dense_from", ROUTES)
@pytest.mark.parametrize("before_gated", [False, True], ids=["dense-after", "gated-after"])
def test_an_off_block_adds_nothing_even_where_its_units_overflow(block_size, dense_from,
                                                                 before_gated):
    # Whichever route computes an example's off blocks (dense for any block on under
    # dense_from 1e-6; all of them, as pairs, before a gated layer), they add exactly 0 to it:
    # its answer does not depend on its route, nor so on its batch mates.
    model, finite, x = off_block_overflow_case(block_size, before_gated=before_gated)
    with torch.no_grad():
        want = torch.cat([finite(x[:1]).logits, model(x[1:]).logits])
    engine = SkipNetwork(model, dense_from=dense_from)
    with np.errstate(all="ignore"):
        for rows in ([0], [0, 1], [0, 1, 2], [0, 1, 2] * 11):
            got = engine(x[rows]).logits
            torch.testing.assert_close(got, want[rows], atol=1e-4, rtol=1e-5)
            served = engine.forward_numpy(x[rows].numpy()).logits
            np.testing.assert_allclose(served, want[rows].numpy(), atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_grouped_products_split_over_threads_give_the_same_output(threads, monkeypatch):
    """Threads write disjoint pair rows, consumer chunks sum in any order: same output."""
    import models.skip.cpu as skip_inference
    import models.skip.numpy_products as block_products

    monkeypatch.setattr(block_products, "PARALLEL_FROM_MACS", 0)  # split even tiny work
    monkeypatch.setattr(skip_inference, "PARTS_BUFFER_ELEMENTS", 8)  # many consumer chunks
    model = network("st", 11, "gated-dense-gated")
    for layer in model.gated_layers:
        layer.threshold.fill_(0.0)
    x = torch.randn(33, 12, generator=torch.Generator().manual_seed(2))
    expected = model(x).logits
    got = SkipNetwork(model, dense_from=2.0, threads=threads)(x).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_split_spans_balances_pairs_and_keeps_order():
    from models.skip.numpy_products import chunk_spans, split_spans

    spans = [(0, 0, 10), (2, 10, 12), (3, 12, 30), (5, 30, 31), (7, 31, 40)]
    runs = split_spans(spans, 2)
    assert [s for run in runs for s in run] == spans and len(runs) == 2
    assert split_spans(spans, 1) == [spans]
    assert split_spans([], 4) == []
    chunks = list(chunk_spans(spans, 12))
    assert [(a, b) for a, b, _ in chunks] == [(0, 12), (12, 30), (30, 40)]
    assert chunks[0][2] == [(0, 0, 10), (2, 10, 12)] and chunks[1][2] == [(3, 0, 18)]


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("dense_from", [2.0, 0.5])
def test_examples_with_every_block_on_are_read_whole(layout, dense_from):
    """A read-out the C kernels cannot sum pairs into (4 classes) reads examples that computed
    every block as whole rows, the rest by pairs: the same output and exact reports."""
    model = network("st", 21, layout)
    x = torch.randn(30, 12, generator=torch.Generator().manual_seed(22))
    first = model.gated_layers[0]
    with torch.no_grad():  # a third of the examples get every first-layer block on
        logits = first.gater(x)
        first.threshold.fill_(float(torch.quantile(logits[10:].min(-1).values, 0.5)))
        x[:10] *= 0.0  # equal inputs, equal logits: ...
        first.gater.out.bias.fill_(float(first.threshold) + 1.0)  # ... all above the line
    every = (first.gater(x) > first.threshold).all(-1)
    assert 10 <= int(every.sum()) < 30
    assert_same(model, x, dense_from)


def test_a_lone_example_goes_dense_in_numpy_and_a_batch_in_torch(monkeypatch):
    # Every product counts as large here, so only the row count decides: a single row stays
    # in numpy at any size (torch's one-row product is the slower there), two or more rows of a
    # large product go to torch.
    from models.skip import cpu

    monkeypatch.setattr(cpu, "TORCH_DENSE_FROM_MACS", 1)
    model = network("st", 0, "gated-gated")
    for layer in model.gated_layers:  # every block on
        layer.threshold.fill_(float(layer.estimator.logit_threshold(-1e9)))
    calls = []
    real_addmm = torch.addmm

    def counting_addmm(*args, **kwargs):
        calls.append(args[1].shape[0])
        return real_addmm(*args, **kwargs)

    monkeypatch.setattr(cpu.torch, "addmm", counting_addmm)
    engine = SkipNetwork(model)
    for batch in (1, 3):
        x = torch.randn(batch, model.config.input_size,
                        generator=torch.Generator().manual_seed(1))
        calls.clear()
        torch.testing.assert_close(engine(x).logits, model(x).logits, atol=1e-5, rtol=1e-5)
        assert (calls == []) == (batch == 1), (batch, calls)


@pytest.mark.skipif(load_native() is None, reason="no C compiler: the lone path needs the kernels")
@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("reader", ["dense-64", "read-out"])
def test_a_lone_example_takes_the_short_path_with_the_batch_path_result(estimator, reader,
                                                                       monkeypatch):
    """Where the C kernels run every gated layer, a lone example skips the batch bookkeeping:
    with units whose gate values C computes its whole forward runs in one C call
    (`models.skip.lone_program`; every estimator here but hard-concrete), and with the others
    each gated layer takes the short path (`_lone_gated`). Alone it gets the
    dense masked forward's logits and gates, and the blocks on it has inside a batch. The
    first layer has 4 blocks, so an example with 3 on computes all 4 before the gated layer
    that reads it on the Python paths (`WHOLE_BEFORE_GATED_FROM`), as in a batch; the C
    forward computes the blocks on alone, and reads only those. The last gated layer is read
    by a 64-unit dense layer (pair sums in C) or by the 4-class read-out (a row with every
    block on read whole on the Python paths)."""
    layers = [
        {"blocks": 4, "block_size": TILE, "gater_hidden": 5, "activation": "relu"},
        {"blocks": 3, "block_size": TILE, "gater_hidden": 0, "activation": "tanh"},
        {"blocks": TILE, "block_size": 1, "activation": "relu", "gated": False},
    ]
    model = tiny_network(layers if reader == "dense-64" else layers[:2], estimator=estimator,
                         seed=7)
    x = torch.randn(24, 12, generator=torch.Generator().manual_seed(8))
    lone_calls = []
    short_path = SkipNetwork._lone_gated

    def counted(*args):
        lone_calls.append(1)
        return short_path(*args)

    monkeypatch.setattr(SkipNetwork, "_lone_gated", counted)
    seen = set()
    in_c = gate_value_code(model.gated_layers[0].estimator) is not None
    for tau in (-2.0, -0.5, 0.0, 0.5, 2.0):
        for layer in model.gated_layers:
            layer.threshold.fill_(float(layer.estimator.logit_threshold(tau)))
        engine = SkipNetwork(model)
        assert (engine._lone is not None) == in_c
        together = engine(x)
        for i in range(x.shape[0]):
            alone = engine(x[i:i + 1])
            reference = model(x[i:i + 1])
            torch.testing.assert_close(alone.logits, reference.logits, atol=1e-5, rtol=1e-5)
            for got, want in zip(alone.gates, reference.traces, strict=True):
                torch.testing.assert_close(got, want.gates)
            assert torch.equal(alone.active_blocks, together.active_blocks[i:i + 1])
            assert torch.equal(alone.computed_blocks, alone.active_blocks if in_c
                               else together.computed_blocks[i:i + 1])
            seen.add(tuple(alone.active_blocks[0].tolist()))
    # both gated layers of every lone call on the Python short path; none in C
    assert len(lone_calls) == (0 if in_c else 2 * 5 * x.shape[0])
    first = {active[0] for active in seen}
    if estimator != "noisy-rectifier":  # a rectifier's gate is off wherever max(0, a) = 0
        assert {0, 3, 4} <= first, first  # none, the whole-row route, every block


@pytest.mark.skipif(load_native() is None, reason="no C compiler: the gaters run in numpy")
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("batch", [1, 5, 16, 17, 40])
def test_gaters_in_the_kernels_give_the_dense_masked_forward(threads, batch):
    """Gaters whose first product is as wide as the kernels' tile (a 64-unit hidden layer, and
    no hidden layer before 64 blocks) run it in the kernels when made to at any size: the
    spans of rows split between threads, with a last span shorter than the others."""
    model = tiny_network([
        {"blocks": 3, "block_size": TILE, "gater_hidden": TILE, "activation": "relu"},
        {"blocks": TILE, "block_size": TILE, "gater_hidden": 0, "activation": "tanh"},
    ], estimator="st", seed=4)
    for layer in model.gated_layers:
        layer.threshold.fill_(0.0)
    engine = SkipNetwork(model, threads=threads)
    gaters = [stage.gater for stage in engine._stages if stage.gater is not None]
    assert len(gaters) == 2 and all(g.native is not None for g in gaters)
    for gater in gaters:
        gater.native_from = 0
    x = torch.randn(batch, model.config.input_size, generator=torch.Generator().manual_seed(3))
    reference = model(x)
    got = engine(x)
    torch.testing.assert_close(got.logits, reference.logits, atol=1e-5, rtol=1e-5)
    for mine, want in zip(got.gates, reference.traces, strict=True):
        torch.testing.assert_close(mine, want.gates)


@pytest.mark.parametrize("estimator", ["st", "sts"])  # binary gates, and gates of any value
@pytest.mark.parametrize("batch", [1, 5])
def test_the_numpy_forward_gives_what_the_tensor_forward_gives(batch, estimator):
    # The server calls forward_numpy; benchmarks and training call the engine with tensors.
    # Same products in the same order: equal bit for bit, counts and gates too.
    torch.manual_seed(3)
    model = GatedNetwork(preset("blocks", input_size=96, estimator=estimator)).eval()
    x = torch.randn(batch, 96)
    with torch.no_grad():
        for _ in model.gated_layers:  # each layer's threshold once the one before is set
            traces = model(torch.randn(64, 96)).traces
            model.set_thresholds([float(density_threshold(t.logits, 0.3)) for t in traces])
    engine = SkipNetwork(model)
    want = engine(x)
    got = engine.forward_numpy(x.numpy())
    assert isinstance(got.logits, np.ndarray) and isinstance(got.active_blocks, np.ndarray)
    np.testing.assert_array_equal(got.logits, want.logits.numpy())
    np.testing.assert_array_equal(got.active_blocks, want.active_blocks.numpy())
    np.testing.assert_array_equal(got.computed_blocks, want.computed_blocks.numpy())
    for mine, theirs in zip(got.gates, want.gates, strict=True):
        assert isinstance(mine, np.ndarray) and 0 < np.count_nonzero(mine) < mine.size
        np.testing.assert_array_equal(mine, theirs.numpy())
    if estimator != "st":  # gates of other values than 0 and 1 multiplied the blocks
        assert any(np.setdiff1d(np.unique(g), [0.0, 1.0]).size for g in got.gates)
    with pytest.raises(ValueError, match=r"\(B, 96\)"):
        engine.forward_numpy(x.numpy()[:, :95])
