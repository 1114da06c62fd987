"""A lone example's forward in one C call (`models.skip.lone_program`) equals the dense masked
forward, computes only the blocks on, never reads an off block's weights, and is chosen only
where it applies. Every test runs once per instruction set this CPU runs.

Tolerance on the logits: 1e-4 relative and absolute (float32 sums of up to 4096 terms in
another order); gates and block counts exactly.
"""

import threading

import pytest
import torch

from models.block_weights import round_main_weights
from models.skip.cpu import SkipNetwork
from models.skip.program_stages import GATE_RELU, gate_value_code

from ..tiny_networks import tiny_network
from .kernel_sets import kernel_set, kernels  # noqa: F401 (the fixture)
from .test_off_blocks_are_never_read import mixed, poisoned

pytestmark = pytest.mark.skipif(kernels is None, reason="no C compiler built the kernels")

# Each stage kind the C forward runs: a gater with a hidden layer (narrow, or 64 units: in the
# kernels) or without one (its blocks as wide as a tile, or not); a gated layer read by a
# dense layer 64 units wide (pair sums in the kernels), 70 wide (dot products), by the class
# read-out, or by a gated layer (tiles of the input blocks on); a dense layer reading the input
# row (12 units: dot products with a tail) or another dense layer; every activation.
LAYOUTS = {
    "gated-dense64": [
        {"blocks": 5, "block_size": 64, "gater_hidden": 8, "activation": "relu"},
        {"blocks": 64, "block_size": 1, "activation": "tanh", "gated": False}],
    "gated-dense70-dense": [
        {"blocks": 4, "block_size": 64, "gater_hidden": 64, "activation": "sigmoid"},
        {"blocks": 70, "block_size": 1, "activation": "linear", "gated": False},
        {"blocks": 9, "block_size": 1, "activation": "relu", "gated": False}],
    "gated-gated": [
        {"blocks": 4, "block_size": 64, "gater_hidden": 0, "activation": "relu"},
        {"blocks": 3, "block_size": 128, "gater_hidden": 5, "activation": "tanh"}],
    "dense-gated": [
        {"blocks": 20, "block_size": 1, "activation": "relu", "gated": False},
        {"blocks": 3, "block_size": 64, "gater_hidden": 0, "activation": "linear"}],
    "wide-gaters": [
        {"blocks": 64, "block_size": 64, "gater_hidden": 0, "activation": "relu"},
        {"blocks": 2, "block_size": 64, "gater_hidden": 64, "activation": "relu"}],
}


def thresholds(model, x: torch.Tensor, quantile: float) -> None:
    """Each gated layer's threshold at this quantile of its logits over x, layer by layer
    (below all of them for 0, above all for 1), halfway between two logits."""
    with torch.no_grad():
        for layer in model.layers:
            if layer.gater is not None:
                values = layer.gater(x).flatten().sort().values
                cut = round(quantile * values.numel())
                line = (values[0] - 1.0 if cut == 0 else values[-1] + 1.0 if cut == values.numel()
                        else (values[cut - 1] + values[cut]) / 2)
                layer.threshold.fill_(float(line))
            x, _ = layer(x)


def engine(model, threads: int) -> SkipNetwork:
    """The engine with every product split over `threads` threads, however small."""
    out = SkipNetwork(model, threads=threads)
    assert out._lone is not None
    out._lone.threads_from = 0
    return out


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_a_lone_example_in_c_equals_the_dense_masked_forward(layout, threads, precision):
    check_against_the_dense_masked_forward(tiny_network(LAYOUTS[layout], seed=3), threads,
                                           precision)


# Every estimator whose gate values C computes: binary, and worth their smooth gate (the
# sigmoid, the rectifier's max(0, a), sqrt(sigm(a))).
VALUED = ["st", "sts", "rectifier", "noisy-rectifier", "noisy-sigmoid", "dropout-sigmoid"]


@pytest.mark.parametrize("estimator", VALUED)
@pytest.mark.parametrize("layout", ["gated-gated", "gated-dense70-dense"])
def test_gates_worth_their_estimators_value_multiply_their_blocks_in_c(layout, estimator):
    model = tiny_network(LAYOUTS[layout], estimator=estimator, seed=4)
    assert gate_value_code(model.gated_layers[0].estimator) is not None
    check_against_the_dense_masked_forward(model, 2, "float32")


def check_against_the_dense_masked_forward(model, threads: int, precision: str) -> None:
    """Logits, gate values (exactly where binary) and block counts of a lone example in C
    against the model's dense masked forward, at thresholds leaving none, some and every
    gate on."""
    if precision == "bfloat16":  # the panels then hold bfloat16, read exactly
        round_main_weights(model, "bfloat16")
    x = torch.randn(12, 12, generator=torch.Generator().manual_seed(5))
    binary = model.gated_layers[0].estimator.binary
    seen = set()
    for quantile in (0.0, 0.3, 0.7, 1.0):
        thresholds(model, x, quantile)
        skip = engine(model, threads)
        assert skip.block_weights == precision
        for example in x.split(1):
            got, want = skip(example), model(example)
            torch.testing.assert_close(got.logits, want.logits, rtol=1e-4, atol=1e-4)
            on = [trace.gates for trace in want.traces]
            for g, w in zip(got.gates, on, strict=True):
                torch.testing.assert_close(g, w, rtol=0, atol=0) if binary else \
                    torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)
            active = [[int((w != 0).sum()) for w in on]]
            assert got.active_blocks.tolist() == got.computed_blocks.tolist() == active
            seen.add(tuple(active[0]))
    blocks = tuple(layer.config.blocks for layer in model.gated_layers)
    assert (0,) * len(blocks) in seen and len(seen) > 2  # none on, and some
    # every one (a rectifier's gate is off wherever max(0, a) = 0, whatever the threshold)
    assert blocks in seen or gate_value_code(model.gated_layers[0].estimator) == GATE_RELU


def test_numpy_inputs_give_numpy_outputs_equal_to_the_tensor_forward():
    model = tiny_network(LAYOUTS["gated-gated"], seed=4)
    x = torch.randn(1, 12, generator=torch.Generator().manual_seed(1))
    skip = SkipNetwork(model)
    tensors, arrays = skip(x), skip.forward_numpy(x.numpy())
    assert torch.equal(tensors.logits, torch.from_numpy(arrays.logits))
    assert arrays.active_blocks.shape == arrays.computed_blocks.shape == (1, 2)
    assert [g.shape for g in arrays.gates] == [(1, 4), (1, 3)]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("layout", ["gated-gated", "gated-dense64", "wide-gaters"])
def test_a_lone_example_in_c_never_reads_the_weights_of_its_off_blocks(layout, seed):
    """The weights an off block owns (its rows, and the next layer's columns reading it) set
    to NaN: one read would make the logits NaN or wrong (test_off_blocks_are_never_read)."""
    model = tiny_network(LAYOUTS[layout], seed=seed)
    x = torch.randn(64, 12, generator=torch.Generator().manual_seed(seed))
    thresholds(model, x, 0.5)
    checked = [example for example in x.split(1) if mixed(model, example)][:4]
    assert len(checked) >= 2, "too few examples with blocks on and off in every layer"
    for example in checked:
        skip = engine(poisoned(model, example), 2)
        got = skip(example).logits
        assert torch.isfinite(got).all(), "an off block's weights were read"
        torch.testing.assert_close(got, model(example).logits, rtol=1e-4, atol=1e-4)


def test_concurrent_callers_each_get_their_own_forward():
    """Callers on several threads share the kernels' pool (one uses it, the others run their
    products alone) and nothing else: each gets its own example's result."""
    model = tiny_network(LAYOUTS["gated-gated"], seed=5)
    x = torch.randn(16, 12, generator=torch.Generator().manual_seed(2))
    thresholds(model, x, 0.5)
    assert callers_that_got_another_result(engine(model, 2), list(x.split(1)), 40) == []


def callers_that_got_another_result(skip: SkipNetwork, inputs: list[torch.Tensor],
                                    rounds: int) -> list[int]:
    """Four threads calling `skip` on the inputs in turn, `rounds` calls each: the inputs whose
    logits differed from a lone caller's."""
    want = [skip(x).logits for x in inputs]
    failures = []

    def run(offset: int) -> None:
        for round_ in range(rounds):
            i = (offset + round_) % len(inputs)
            if not torch.equal(skip(inputs[i]).logits, want[i]):
                failures.append(i)

    workers = [threading.Thread(target=run, args=(offset,)) for offset in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return failures


@pytest.mark.parametrize(("change", "why"), [
    ({"estimator": "hard-concrete"}, "gate values C does not compute"),
    ({"layers": [{"blocks": 3, "block_size": 32, "gater_hidden": 0, "activation": "relu"}]},
     "blocks narrower than the kernels' tiles"),
])
def test_networks_the_c_forward_does_not_run_take_the_python_path(change, why):
    model = tiny_network(change.get("layers", LAYOUTS["gated-gated"]),
                         estimator=change.get("estimator", "st"), seed=6)
    assert_the_python_path_runs(model, "_lone", 1, why)


def assert_the_python_path_runs(model, program: str, rows: int, why: str) -> None:
    """The engine of `model` has no C program (its attribute `program`), and its forward of
    `rows` examples is still the dense masked forward's."""
    skip = SkipNetwork(model)
    assert getattr(skip, program) is None, why
    x = torch.randn(rows, 12, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(skip(x).logits, model(x).logits, rtol=1e-4, atol=1e-4)


def test_an_engine_that_routes_examples_dense_keeps_the_python_path():
    model = tiny_network(LAYOUTS["gated-gated"], seed=7)
    assert SkipNetwork(model, dense_from=0.5)._lone is None  # it may compute blocks that are off
    assert SkipNetwork(model, dense_from=2.0)._lone is not None  # never routes dense
    assert SkipNetwork(model, native=False)._lone is None
