"""The CPU engine and the ONNX graph really skip: an off block's weights are never read (the
Triton kernels' own test of this is in test_triton_skip.py, which runs them interpreted).

Equality with the dense masked forward (test_skip_inference.py) would also hold for an engine
that computed every block and then masked. Here the weights an off block owns are set to NaN
before the engine is built: its rows of the layer's main path (weights and bias) and the columns
of the next layer's main path or read-out that read its units. NaN times the zero of a masked
unit is NaN, so one read of a poisoned weight makes the logits NaN, or wrong (a NaN that
reaches a later gater turns its gates off). The gaters keep their weights there: the numpy path
and the ONNX graph run them in full (models.compute counts them so). The C forwards' gaters after
a gated layer read only the units of the blocks computed there, as their main path does; a test
below poisons those gaters' weights for the off blocks' units too. Examples are taken where
every gated layer has blocks both on and off, so that a read would reach the logits.

Tolerance against the clean network: 1e-5 absolute and relative on the logits.
"""

import pytest
import torch

from models.compute import compute_reports, gater_macs
from models.gated_network import GatedNetwork
from models.skip.c_kernels import TILE
from models.skip.c_kernels import load as load_native
from models.skip.cpu import SkipNetwork
from training.calibrate import calibrate_thresholds

from ..tiny_networks import tiny_network
from .test_skip_inference import LAYOUTS
from .test_skip_inference import network as untuned_network


def calibration_inputs(seed: int) -> torch.Tensor:
    """Other inputs than the tests': a threshold calibrated on an example the test then runs
    sits exactly on one of its logits, where torch and the engine may round either way."""
    return torch.rand(256, 12, generator=torch.Generator().manual_seed(10_000 + seed))


def network(estimator: str, seed: int, layout: str) -> GatedNetwork:
    """The engine tests' network, its thresholds put where about 40 % of blocks are on, so
    every layer has blocks on and off."""
    model = untuned_network(estimator, seed, layout)
    calibrate_thresholds(model, calibration_inputs(seed), 0.4)
    return model


@torch.no_grad()
def poisoned(model: GatedNetwork, x: torch.Tensor) -> GatedNetwork:
    """A copy of `model` whose blocks that are off for every example of `x` own NaN weights."""
    out = model(x)
    copy = GatedNetwork(model.config).eval()
    copy.load_state_dict(model.state_dict())
    gates = iter(out.traces)
    readers = [*copy.layers[1:], None]
    for layer, reader in zip(copy.layers, readers, strict=True):
        if layer.gater is None:
            continue
        off = (next(gates).gates != 0).sum(0) == 0  # (K,): off for the whole batch
        units = off.repeat_interleave(layer.config.block_size)  # (N,)
        layer.main.weight[units] = float("nan")
        layer.main.bias[units] = float("nan")
        reading = copy.readout if reader is None else reader.main
        reading.weight[:, units] = float("nan")
    return copy


@torch.no_grad()
def poisoned_gaters(model: GatedNetwork, x: torch.Tensor) -> GatedNetwork:
    """`poisoned`, and each gater after a gated layer with NaN weights for the units of that
    layer's blocks that are off for every example of `x`."""
    gates = iter(model(x).traces)
    copy = poisoned(model, x)
    off_units = None  # of the layer before, where it is gated
    for layer in copy.layers:
        if layer.gater is None:
            off_units = None
            continue
        if off_units is not None:
            (layer.gater.hidden or layer.gater.out).weight[:, off_units] = float("nan")
        off = (next(gates).gates != 0).sum(0) == 0
        off_units = off.repeat_interleave(layer.config.block_size)
    return copy


def off_blocks(model: GatedNetwork, x: torch.Tensor) -> int:
    with torch.no_grad():
        return sum(int(((t.gates != 0).sum(0) == 0).sum()) for t in model(x).traces)


def mixed(model: GatedNetwork, example: torch.Tensor) -> bool:
    """Whether every gated layer has blocks both on and off for this one example."""
    with torch.no_grad():
        on = [int((t.gates != 0).sum()) for t in model(example).traces]
    return all(0 < n < layer.config.blocks
               for n, layer in zip(on, model.gated_layers, strict=True))


CASES = [(layout, seed) for layout in sorted(LAYOUTS) for seed in range(4)]


@pytest.mark.parametrize("native", [False, True], ids=["numpy", "c-kernels"])
@pytest.mark.parametrize(("layout", "seed"), CASES)
def test_one_example_never_reads_the_weights_of_its_off_blocks(layout, seed, native):
    model = network("st", seed, layout)
    x = torch.rand(16, 12, generator=torch.Generator().manual_seed(seed))
    checked = [example for example in x.split(1) if mixed(model, example)]
    assert len(checked) >= 2, "too few examples with blocks on and off in every layer"
    for example in checked:
        got = SkipNetwork(poisoned(model, example), dense_from=2.0, native=native)(example)
        assert torch.isfinite(got.logits).all(), "an off block's weights were read"
        torch.testing.assert_close(got.logits, model(example).logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("seed", range(4))
def test_a_batch_in_the_c_kernels_never_reads_blocks_off_for_all_of_it(seed):
    if load_native() is None:
        pytest.skip("the C kernels did not build here")
    model = network("st", seed, "c-kernels")
    x = torch.rand(8, 12, generator=torch.Generator().manual_seed(seed))
    for batch in (x[:1], x[:3], x):
        if off_blocks(model, batch) == 0:
            continue
        got = SkipNetwork(poisoned(model, batch), dense_from=2.0)(batch).logits
        assert torch.isfinite(got).all(), "an off block's weights were read"
        torch.testing.assert_close(got, model(batch).logits, atol=1e-5, rtol=1e-5)


# Two gated layers the C kernels run, the second one's gater with a hidden layer as wide as the
# kernels' panels (its first product in the tiles kernel) or none (two logits, row by row).
GATERS_AFTER_GATED = {
    hidden: [{"blocks": 3, "block_size": TILE, "gater_hidden": 5, "activation": "relu"},
             {"blocks": 2, "block_size": TILE, "gater_hidden": hidden, "activation": "tanh"},
             {"blocks": TILE, "block_size": 1, "activation": "relu", "gated": False}]
    for hidden in (TILE, 0)}


@pytest.mark.parametrize("hidden", sorted(GATERS_AFTER_GATED))
@pytest.mark.parametrize("seed", range(3))
def test_the_c_forwards_gaters_never_read_the_units_of_blocks_off_before_them(hidden, seed):
    """A gated layer after a gated layer: its gater reads only the units of the blocks the
    layer before computed, in the lone example's C forward and the batch's, and the reports
    count those gaters' first products over those units only."""
    if load_native() is None:
        pytest.skip("the C kernels did not build here")
    model = tiny_network(GATERS_AFTER_GATED[hidden], estimator="st", seed=seed)
    calibrate_thresholds(model, calibration_inputs(seed), 0.4)
    x = torch.rand(16, 12, generator=torch.Generator().manual_seed(seed))
    lone = [example for example in x.split(1) if mixed(model, example)][:3]
    assert lone, "no example with blocks on and off in every layer"
    for batch in [*lone, x[:3]]:
        if off_blocks(model, batch) == 0:
            continue
        got = SkipNetwork(poisoned_gaters(model, batch), dense_from=2.0)(batch)
        assert not got.gaters_read_all_inputs
        assert torch.isfinite(got.logits).all(), "a gater read an off block's units"
        torch.testing.assert_close(got.logits, model(batch).logits, atol=1e-5, rtol=1e-5)
        in_full = compute_reports(model.config, got.active_blocks, got.computed_blocks)
        for report, full in zip(got.reports(model), in_full, strict=True):
            assert report.gater_macs < full.gater_macs == gater_macs(model.config)
            assert full.executed_macs - report.executed_macs == (full.gater_macs
                                                                 - report.gater_macs)


def test_the_gater_poison_is_seen_by_the_numpy_path():
    """The numpy path's gaters read every input unit (and say so): the poisoned gater weights
    reach its logits, so the test above would catch a C forward that read them too."""
    model = network("st", 0, "gated-gated")
    x = next(e for e in torch.rand(100, 12, generator=torch.Generator().manual_seed(0)).split(1)
             if mixed(model, e))
    got = SkipNetwork(poisoned_gaters(model, x), dense_from=2.0, native=False)(x)
    assert got.gaters_read_all_inputs
    assert not torch.allclose(got.logits, model(x).logits, atol=1e-5, rtol=1e-5)


def test_the_poison_is_seen_by_an_engine_that_computes_every_block():
    # The same poisoned network routed dense (every block computed, then masked): the logits
    # come out NaN or wrong, so the tests above would catch an engine that did this.
    model = network("st", 0, "gated-gated")
    x = next(e for e in torch.rand(100, 12, generator=torch.Generator().manual_seed(0)).split(1)
             if mixed(model, e))
    got = SkipNetwork(poisoned(model, x), dense_from=1e-6)(x).logits
    assert not torch.allclose(got, model(x).logits, atol=1e-5, rtol=1e-5)


def onnx_logits(model: GatedNetwork, x: torch.Tensor, **export) -> torch.Tensor:
    from models.skip.onnx_export import export_onnx, ort_session

    logits = ort_session(export_onnx(model, **export)).run(None, {"x": x.numpy()})[0]
    return torch.from_numpy(logits)


# The union path (the blocks on anywhere in the batch), with and without the grouped branch of
# a gated layer read by a dense one.
ONNX_PATHS = {"union": {"dense_fallback": 1.0, "grouped": None},
              "grouped": {"dense_fallback": 1.0, "grouped": (1, 1.0)},
              "operators": {"custom_ops": True}}  # sparsegate's onnxruntime operators


# A known gap: in the portable grouped branch, a gated layer that reads a gated
# layer multiplies every input unit, those of the earlier layer's off blocks included (its
# weight columns for them are read), so on that path the graph runs more multiply-adds than
# models.compute counts for it. sparsegate's operators read only the blocks computed before.
GATED_READS_GATED = {"gated-gated", "c-kernels"}


@pytest.mark.parametrize("path", sorted(ONNX_PATHS))
@pytest.mark.parametrize(("layout", "seed"), CASES)
def test_the_onnx_graph_never_reads_the_weights_of_off_blocks(layout, seed, path, request):
    pytest.importorskip("onnxruntime")
    if path == "operators":
        from models.skip import onnx_ops

        if not onnx_ops.available():
            pytest.skip("sparsegate's onnxruntime operators need a C compiler")
    if path == "grouped" and layout in GATED_READS_GATED:
        request.applymarker(pytest.mark.xfail(
            strict=True, reason="the grouped branch's gated layer reads every input unit of "
                                "the gated layer before it"))
    model = network("st", seed, layout)
    x = torch.rand(16, 12, generator=torch.Generator().manual_seed(seed))
    checked = [example for example in x.split(1) if mixed(model, example)][:4]
    assert len(checked) >= 2, "too few examples with blocks on and off in every layer"
    for example in checked:
        got = onnx_logits(poisoned(model, example), example, **ONNX_PATHS[path])
        assert torch.isfinite(got).all(), "an off block's weights were read"
        torch.testing.assert_close(got, model(example).logits, atol=1e-5, rtol=1e-5)


def test_the_poison_is_seen_by_the_onnx_graphs_dense_branch():
    pytest.importorskip("onnxruntime")
    model = network("st", 0, "gated-gated")
    x = next(e for e in torch.rand(100, 12, generator=torch.Generator().manual_seed(0)).split(1)
             if mixed(model, e))
    got = onnx_logits(poisoned(model, x), x, dense_fallback=-1.0, grouped=None)
    assert not torch.allclose(got, model(x).logits, atol=1e-5, rtol=1e-5)
