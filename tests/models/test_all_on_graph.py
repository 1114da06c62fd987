"""A batch with every gate on as one onnxruntime run (`models.skip.all_on_graph`): its logits are
the dense masked forward's, it says when a gate is off (and the engine then computes the batch
its own way), and the engine takes it only where dense products were measured faster.

Tolerance on the logits: 1e-4 relative and absolute (float32 sums in another order); counts
exactly.
"""

import numpy as np
import pytest
import torch

from benchmarks.all_on_sessions import idle_cpu_ms
from models.skip.all_on_graph import AllOnGraph
from models.skip.cpu import SkipNetwork
from models.skip.onnx_export import export_all_on_onnx, ort_session
from models.skip.onnx_graph import ExportError

from ..tiny_networks import tiny_network
from .kernel_sets import kernels
from .test_lone_program import LAYOUTS, thresholds

pytestmark = pytest.mark.skipif(kernels is None, reason="no C compiler built the kernels")


def all_on(model) -> None:
    for layer in model.gated_layers:
        layer.threshold.fill_(-1e9)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_the_graph_of_a_network_with_every_gate_on_is_its_dense_masked_forward(layout):
    model = tiny_network(LAYOUTS[layout], seed=2)
    all_on(model)
    x = torch.randn(9, 12, generator=torch.Generator().manual_seed(3))
    logits, off = ort_session(export_all_on_onnx(model)).run(None, {"x": x.numpy()})
    torch.testing.assert_close(torch.from_numpy(logits), model(x).logits, rtol=1e-4,
                               atol=1e-4)
    assert off.tolist() == [0] * len(model.gated_layers)


def test_it_counts_the_gates_off_in_each_layer():
    """The first layer all on, the second with some gates off: the counts are the second
    layer's off gates over the batch, which the graph's gater computes from the first layer's
    dense output (the network's own, every gate before being on)."""
    model = tiny_network(LAYOUTS["gated-gated"], seed=4)
    x = torch.randn(20, 12, generator=torch.Generator().manual_seed(5))
    model.gated_layers[0].threshold.fill_(-1e9)
    thresholds(model, x, 0.5)
    model.gated_layers[0].threshold.fill_(-1e9)
    with torch.no_grad():
        want = [int((t.gates == 0).sum()) for t in model(x).traces]
    _, off = ort_session(export_all_on_onnx(model)).run(None, {"x": x.numpy()})
    assert off.tolist() == want and want[0] == 0 and want[1] > 0
    assert AllOnGraph(model, 2).run(x.numpy()) is None


def test_its_threads_spin_within_a_run_and_not_after_it():
    """Workers left spinning after a run would take the cores from whatever runs next: over
    a 50 ms sleep after each run, the process spends under 10 ms of CPU (a session whose
    threads spin between runs keeps a core busy for about 40 ms after each,
    `python -m benchmarks.all_on_sessions`)."""
    model = tiny_network(LAYOUTS["gated-gated"], seed=8)
    all_on(model)
    x = torch.randn(64, 12, generator=torch.Generator().manual_seed(2)).numpy()
    graph = AllOnGraph(model, 2)
    assert graph.session is None  # made on first use
    ran = []
    spent = [idle_cpu_ms(lambda: ran.append(graph.run(x) is not None), 0.05) for _ in range(3)]
    assert ran == [True] * 3 and max(spent) < 10.0, spent
    options = graph.session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "1"


def test_only_networks_of_binary_units_have_one():
    model = tiny_network(LAYOUTS["gated-gated"], estimator="sts", seed=1)
    assert AllOnGraph.make(model, 2) is None
    with pytest.raises(ExportError, match="binary"):
        export_all_on_onnx(model)
    assert AllOnGraph.make(tiny_network(LAYOUTS["gated-gated"], seed=1), 2) is not None


def spied(engine: SkipNetwork) -> list[bool]:
    """Each run of the engine's graph, whether it gave logits (every gate on)."""
    runs, real = [], engine._all_on_graph.run

    def run(x):
        out = real(x)
        runs.append(out is not None)
        return out

    engine._all_on_graph.run = run
    return runs


@pytest.mark.parametrize("dense_pays", [True, False])
def test_the_engine_runs_a_batch_all_on_in_the_graph_where_dense_pays(dense_pays, monkeypatch):
    model = tiny_network(LAYOUTS["gated-gated"], seed=6)
    all_on(model)
    engine = SkipNetwork(model)
    monkeypatch.setattr(engine, "_dense_pays", lambda x, as_torch: dense_pays)
    runs = spied(engine)
    for batch in (5, 6, 7):  # one size range: the first measured, the others routed
        x = torch.randn(batch, 12, generator=torch.Generator().manual_seed(batch))
        out = engine(x)
        torch.testing.assert_close(out.logits, model(x).logits, rtol=1e-4, atol=1e-4)
        assert out.active_blocks.tolist() == out.computed_blocks.tolist() == [[4, 3]] * batch
        assert all(bool((g == 1).all()) for g in out.gates)
    assert runs == ([True, True] if dense_pays else [])
    assert (engine._all_on_graph.session is not None) == dense_pays
    # numpy in, numpy out
    arrays = engine.forward_numpy(np.ones((5, 12), np.float32))
    assert isinstance(arrays.logits, np.ndarray) and arrays.active_blocks.shape == (5, 2)


def test_a_batch_taken_for_all_on_with_a_gate_off_is_computed_the_engines_way(monkeypatch):
    model = tiny_network(LAYOUTS["gated-gated"], seed=7)
    x = torch.randn(6, 12, generator=torch.Generator().manual_seed(1))
    thresholds(model, x, 0.0)  # every gate on for x
    engine = SkipNetwork(model)
    monkeypatch.setattr(engine, "_dense_pays", lambda x, as_torch: True)
    engine(x)
    engine(x)  # measured, and the size range is now taken to be all on
    runs = spied(engine)
    y = x * 20.0  # logits further out: some gates off
    with torch.no_grad():
        assert any(bool((t.gates == 0).any()) for t in model(y).traces)
    out = engine(y)
    torch.testing.assert_close(out.logits, model(y).logits, rtol=1e-4, atol=1e-4)
    assert runs == [False]
    engine(y)
    assert runs == [False]  # no longer taken to be all on: the C forward ran it
