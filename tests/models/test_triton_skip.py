"""The Triton skip path (models.skip.cuda) equals the dense masked forward and SkipNetwork.

Without a GPU the kernels run in Triton's interpreter on CPU tensors: TRITON_INTERPRET=1 is
set here, before anything imports triton (nothing else in the suite imports it, and models/
imports it only when the first kernel is needed). With a GPU (and TRITON_INTERPRET unset)
the same cases run compiled on CUDA, and the `gpu` tests add the issue's size in bf16.

Tolerances on the logits: fp32, 1e-5 absolute and relative (only the order of the sums
differs, as for SkipNetwork); fp16, 1e-2 of the largest |logit| (inputs, weights and each
hidden layer rounded to 11 bits, sums in fp32); bf16, 3e-2 (8 bits).
"""

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
DEVICE = "cpu" if INTERPRET else "cuda"

pytest.importorskip("triton")

from models.compute import active_blocks_of, compute_reports  # noqa: E402
from models.gated_config import GatedNetworkConfig  # noqa: E402
from models.gated_network import GatedNetwork  # noqa: E402
from models.skip import cuda as gpu_skip  # noqa: E402
from models.skip.cpu import SkipNetwork  # noqa: E402
from models.skip.cuda import (  # noqa: E402
    GROUPED_DENSE_FROM,
    CudaGraphSkipNetwork,
    TritonSkipNetwork,
)
from models.skip.routing import BATCH_DENSE_FROM, BATCH_ROUTE_MIN_BATCH  # noqa: E402

from ..tiny_networks import (  # noqa: E402
    OVERFLOW,
    off_block_overflow_case,
    overflowing_network,
    tiny_network,
)

ROOT = Path(__file__).resolve().parents[2]
needs_compiled_cuda = pytest.mark.skipif(
    INTERPRET or not torch.cuda.is_available(), reason="needs CUDA, kernels compiled")

LAYOUTS = {
    "gated-dense": [
        {"blocks": 6, "block_size": 16, "gater_hidden": 5, "activation": "relu"},
        {"blocks": 24, "block_size": 1, "activation": "tanh", "gated": False}],
    "gated-gated": [
        {"blocks": 4, "block_size": 32, "gater_hidden": 0, "activation": "sigmoid"},
        {"blocks": 8, "block_size": 16, "gater_hidden": 6, "activation": "tanh"}],
    "gated-dense-gated": [
        {"blocks": 8, "block_size": 16, "gater_hidden": 5, "activation": "relu"},
        {"blocks": 20, "block_size": 1, "activation": "linear", "gated": False},
        {"blocks": 5, "block_size": 5, "gater_hidden": 0, "activation": "relu"}],
    "dense-gated": [  # a gated layer reading a dense one; odd widths exercise the masks
        {"blocks": 9, "block_size": 1, "activation": "sigmoid", "gated": False},
        {"blocks": 7, "block_size": 3, "gater_hidden": 4, "activation": "linear"}],
}


def network(layout: str, estimator: str = "st", seed: int = 0) -> GatedNetwork:
    model = tiny_network(LAYOUTS[layout], estimator=estimator, seed=seed)
    with torch.no_grad():
        for layer in model.gated_layers:
            if layer.estimator.sparsity_kind == "kl":
                # The bias a sigmoid unit starts at for the fixture's density of 0.3. STS
                # starts far lower (P(on) = sqrt(sigm(a))), where a threshold of 0 would turn
                # every gate of a layer off for a whole batch.
                layer.gater.out.bias.fill_(math.log(0.3 / 0.7))
            # With the spread logits, a threshold of 0 cuts anywhere.
            layer.threshold.fill_(float(layer.estimator.logit_threshold(0.0)))
    return model.to(DEVICE)


def inputs(batch: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, 12, generator=torch.Generator().manual_seed(seed)).to(DEVICE)


def masked_forward(model: GatedNetwork, x: torch.Tensor, gates: list[torch.Tensor]
                   ) -> torch.Tensor:
    """The dense masked forward in fp32 under given gates (for low precision, whose later
    gaters read rounded inputs and may flip a gate that sits at its threshold)."""
    remaining = iter(gates)
    with torch.no_grad():
        for layer in model.layers:
            h = layer.activation(layer.main(x))
            if layer.gater is not None:
                k, s = layer.config.blocks, layer.config.block_size
                h = (h.unflatten(-1, (k, s)) * next(remaining).unsqueeze(-1)).flatten(-2)
            x = h
        return model.readout(x)


def expected_computed(out, path_default_dense_from: float | None, model) -> torch.Tensor:
    if path_default_dense_from is None:
        return out.active_blocks
    blocks = torch.tensor([layer.config.blocks for layer in model.gated_layers],
                          device=out.active_blocks.device)
    dense = out.active_blocks >= path_default_dense_from * blocks
    return torch.where(dense, blocks, out.active_blocks)


def assert_matches(model, x, out, atol=1e-5, rtol=1e-5):
    with torch.no_grad():
        reference = model(x)
    torch.testing.assert_close(out.logits, reference.logits, atol=atol, rtol=rtol)
    assert len(out.gates) == len(reference.traces)
    for got, want in zip(out.gates, reference.traces, strict=True):
        torch.testing.assert_close(got, want.gates)
    assert torch.equal(out.active_blocks, active_blocks_of([t.gates for t in reference.traces]))


@pytest.mark.parametrize("path", ["gemv", "grouped"])
@pytest.mark.parametrize("batch", [1, 3, 17])
@pytest.mark.parametrize(("layout", "estimator"), [
    ("gated-dense", "st"), ("gated-gated", "sts"), ("gated-dense-gated", "noisy-rectifier"),
    ("dense-gated", "hard-concrete")])
def test_fp32_matches_the_dense_masked_forward_and_skip_network(layout, estimator, batch,
                                                                path):
    model = network(layout, estimator, seed=batch)
    x = inputs(batch)
    out = TritonSkipNetwork(model, torch.float32, path=path)(x)
    assert_matches(model, x, out)
    cpu_model = network(layout, estimator, seed=batch).cpu()
    cpu_reference = SkipNetwork(cpu_model)(x.cpu())
    torch.testing.assert_close(out.logits.cpu(), cpu_reference.logits, atol=1e-5, rtol=1e-5)
    assert torch.equal(out.active_blocks.cpu(), cpu_reference.active_blocks)
    # What ran: the active blocks, or all of them for an example the grouped path routed dense.
    default = None if path == "gemv" else GROUPED_DENSE_FROM
    computed = getattr(out, "computed_blocks", None)
    if computed is not None:
        assert torch.equal(computed, expected_computed(out, default, model))
        # This path's gated layers read the whole output of a gated layer before them.
        assert out.reports(cpu_model) == compute_reports(
            cpu_model.config, out.active_blocks.cpu(), computed.cpu(),
            gated_reads_all_inputs=True)


@pytest.mark.parametrize("path", ["gemv", "grouped"])
@pytest.mark.parametrize("poison", [float("nan"), 3e38], ids=["nan", "overflow"])
def test_one_examples_overflow_leaves_its_batch_mates_alone(path, poison):
    # One input that is NaN, or large enough for the first layer to overflow to inf, must not
    # change another example's logits, wherever it sits in the batch.
    model = network("gated-gated", "sts", seed=3)
    x = inputs(4, seed=3)
    engine = TritonSkipNetwork(model, torch.float32, path=path)
    clean = engine(x).logits
    for bad in range(len(x)):
        hostile = x.clone()
        hostile[bad] = poison
        got = engine(hostile).logits
        others = torch.arange(len(x), device=x.device) != bad
        torch.testing.assert_close(got[others], clean[others], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("path", ["gemv", "grouped"])
def test_a_sum_that_overflows_to_nan_stays_nan_through_a_rectifier(path):
    # As in the CPU engine (tests/models/test_skip_inference.py): no answer stays no answer.
    model = overflowing_network(16).to(DEVICE)
    x = inputs(3, seed=3)
    x[1, :2] = OVERFLOW
    with torch.no_grad():
        assert torch.isnan(model(x).logits[1]).all()
    got = TritonSkipNetwork(model, torch.float32, path=path)(x).logits
    assert torch.isnan(got[1]).all() and torch.isfinite(got[[0, 2]]).all(), got


@pytest.mark.parametrize("path", ["gemv", "grouped"])
@pytest.mark.parametrize("dense_from", [1e-9, 2.0], ids=["all-dense", "never"])
@pytest.mark.parametrize("before_gated", [False, True], ids=["dense-after", "gated-after"])
def test_an_off_block_adds_nothing_even_where_its_units_overflow(path, dense_from,
                                                                 before_gated):
    # As in the CPU engine (tests/models/test_skip_inference.py): a route that computes an
    # example's off blocks adds exactly 0 from them, even where their units are inf; at
    # batch 66 a quarter of the pairs are on, so the eager batch route (one GEMM) runs too.
    model, finite, x = off_block_overflow_case(16, before_gated=before_gated)
    model, finite, x = model.to(DEVICE), finite.to(DEVICE), x.to(DEVICE)
    with torch.no_grad():
        want = torch.cat([finite(x[:1]).logits, model(x[1:]).logits])
    engine = TritonSkipNetwork(model, torch.float32, path=path, dense_from=dense_from)
    assert BATCH_ROUTE_MIN_BATCH <= 66 and BATCH_DENSE_FROM <= 0.25
    for rows in ([0], [0, 1], [0, 1, 2], [0, 1, 2] * 22):
        got = engine(x[rows]).logits
        torch.testing.assert_close(got, want[rows], atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("path", ["gemv", "grouped"])
@pytest.mark.parametrize("dense_from", [1e-9, 0.5, 2.0], ids=["all-dense", "half", "never"])
def test_dense_routing_changes_what_runs_not_the_result(path, dense_from):
    # 0.5: in one batch, some examples take the tiled consumer, the rest the atomic one.
    model = network("gated-dense-gated", "st", seed=5)
    x = inputs(17, seed=5)
    out = TritonSkipNetwork(model, torch.float32, path=path, dense_from=dense_from)(x)
    assert_matches(model, x, out)
    computed = getattr(out, "computed_blocks", None)
    if computed is not None:
        assert torch.equal(computed, expected_computed(out, dense_from, model))
        if dense_from == 0.5:  # the case mixes both routes
            assert bool((computed > out.active_blocks).any())
            assert bool((computed == out.active_blocks).any())


@pytest.mark.parametrize("path", ["gemv", "grouped"])
@pytest.mark.parametrize("estimator", ["st", "sts", "noisy-rectifier", "hard-concrete"])
@pytest.mark.parametrize("tau", [1e9, -1e9], ids=["all-off", "all-on"])
def test_all_off_and_all_on(estimator, tau, path):
    model = network("gated-dense-gated", estimator, seed=3)
    for layer in model.gated_layers:
        layer.threshold.fill_(float(layer.estimator.logit_threshold(tau)))
    x = inputs(5, seed=3)
    out = TritonSkipNetwork(model, torch.float32, path=path)(x)
    assert_matches(model, x, out)
    if tau > 0:
        assert int(out.active_blocks.sum()) == 0
    elif estimator != "noisy-rectifier":  # a rectifier gate is never on where max(0, a) = 0
        assert out.active_blocks.tolist() == [[8, 5]] * 5


@pytest.mark.parametrize("path", ["gemv", "grouped"])
@pytest.mark.parametrize("layout", ["gated-dense", "gated-dense-gated"])
def test_fp16_within_tolerance(layout, path):
    model = network(layout, "sts", seed=2)
    x = inputs(17, seed=2)
    out = TritonSkipNetwork(model, torch.float16, path=path)(x)
    assert out.logits.dtype == torch.float32
    want = masked_forward(model, x, out.gates)
    scale = float(want.abs().max())
    assert float((out.logits - want).abs().max()) <= 1e-2 * scale
    # The first gated layer reads the caller's fp32 input: its gates are the reference's.
    with torch.no_grad():
        torch.testing.assert_close(out.gates[0], model(x).traces[0].gates)


def test_no_gated_layer_and_shape_errors():
    config = GatedNetworkConfig.from_dict({
        "input_size": 12, "num_classes": 3,
        "layers": [{"blocks": 10, "block_size": 1, "activation": "relu", "gated": False}]})
    torch.manual_seed(0)
    model = GatedNetwork(config).eval().to(DEVICE)
    x = inputs(3)
    out = TritonSkipNetwork(model, torch.float32)(x)
    torch.testing.assert_close(out.logits, model(x).logits, atol=1e-5, rtol=1e-5)
    assert out.active_blocks.shape == (3, 0)
    with pytest.raises(ValueError, match=r"\(B, 12\)"):
        TritonSkipNetwork(model, torch.float32)(torch.randn(3, 7, device=DEVICE))
    with pytest.raises(ValueError, match="path"):
        TritonSkipNetwork(model, torch.float32, path="fast")


def all_blocks(model, out) -> torch.Tensor:
    blocks = [layer.config.blocks for layer in model.gated_layers]
    return torch.tensor([blocks] * out.active_blocks.shape[0], device=out.active_blocks.device)


@pytest.mark.parametrize(("layout", "estimator"), [
    ("gated-dense", "st"), ("gated-gated", "sts"), ("gated-dense-gated", "noisy-rectifier")])
def test_batch_route_runs_every_block_with_the_same_result(layout, estimator, monkeypatch):
    monkeypatch.setattr(gpu_skip, "BATCH_ROUTE_MIN_BATCH", 8)  # the interpreter is slow
    model = network(layout, estimator, seed=4)
    x = inputs(17, seed=4)
    routed = TritonSkipNetwork(model, torch.float32, batch_dense_from=1e-9)(x)
    assert_matches(model, x, routed)
    assert torch.equal(routed.computed_blocks, all_blocks(model, routed))
    assert bool((routed.active_blocks < routed.computed_blocks).any())  # gates did cut
    kept = TritonSkipNetwork(model, torch.float32, batch_dense_from=math.inf)(x)
    torch.testing.assert_close(kept.logits, routed.logits, atol=1e-5, rtol=1e-5)
    assert not torch.equal(kept.computed_blocks, routed.computed_blocks)
    # Below the smallest batch the route is off, whatever the fraction.
    small = TritonSkipNetwork(model, torch.float32, batch_dense_from=1e-9)(x[:7])
    assert not torch.equal(small.computed_blocks, all_blocks(model, small))


def test_batch_route_starts_at_its_fraction_of_the_batchs_pairs(monkeypatch):
    monkeypatch.setattr(gpu_skip, "BATCH_ROUTE_MIN_BATCH", 8)
    model = network("gated-dense", "st", seed=6)
    x = inputs(17, seed=6)
    first = TritonSkipNetwork(model, torch.float32, batch_dense_from=math.inf)(x)
    pairs, possible = int(first.active_blocks.sum()), first.active_blocks.numel() * 6
    assert 0 < pairs < possible
    at = TritonSkipNetwork(model, torch.float32, batch_dense_from=pairs / possible)(x)
    assert torch.equal(at.computed_blocks, all_blocks(model, at))
    above = TritonSkipNetwork(model, torch.float32,
                              batch_dense_from=(pairs + 0.5) / possible)(x)
    assert torch.equal(above.computed_blocks, first.computed_blocks)
    torch.testing.assert_close(at.logits, above.logits, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="batch_dense_from"):
        TritonSkipNetwork(model, torch.float32, batch_dense_from=0.0)


def test_batch_route_in_fp16_within_tolerance(monkeypatch):
    monkeypatch.setattr(gpu_skip, "BATCH_ROUTE_MIN_BATCH", 8)
    model = network("gated-dense-gated", "sts", seed=2)
    x = inputs(17, seed=2)
    out = TritonSkipNetwork(model, torch.float16, batch_dense_from=1e-9)(x)
    assert torch.equal(out.computed_blocks, all_blocks(model, out))
    want = masked_forward(model, x, out.gates)
    assert float((out.logits - want).abs().max()) <= 1e-2 * float(want.abs().max())


@pytest.mark.parametrize("dense_from_k", [math.inf, 2.0], ids=["no-routing", "routing"])
def test_gate_lists_hold_each_blocks_sparse_examples_and_the_dense_ones(dense_from_k):
    from models.skip import triton_kernels as tk

    generator = torch.Generator().manual_seed(0)
    values = (torch.rand(37, 5, generator=generator) < 0.4).float()
    values[:, 3] = 0.0  # a block nobody uses: an empty list
    values = values.to(DEVICE)
    lists = torch.full((5, 37), -1, dtype=torch.int32, device=DEVICE)
    counts = torch.zeros(5, dtype=torch.int32, device=DEVICE)
    dense = torch.full((37,), -1, dtype=torch.int32, device=DEVICE)
    dense_count = torch.zeros(1, dtype=torch.int32, device=DEVICE)
    blocks = torch.zeros(2, 37, dtype=torch.int64, device=DEVICE)
    tk.gate_lists(values, lists, counts, dense, dense_count, blocks[0], blocks[1], dense_from_k)
    on = values.cpu() != 0
    routed = on.sum(1) >= dense_from_k
    assert blocks[0].tolist() == on.sum(1).tolist()
    assert blocks[1].tolist() == torch.where(routed, 5, on.sum(1)).tolist()
    assert sorted(dense[:int(dense_count)].tolist()) == routed.nonzero().flatten().tolist()
    for block in range(5):
        mine = lists[block, :int(counts[block])].cpu()
        want = (on[:, block] & ~routed).nonzero().flatten()
        assert sorted(mine.tolist()) == want.tolist()  # each exactly once, in any order
    assert int(counts[3]) == 0


def test_cuda_graph_wrapper_falls_back_to_eager_off_cuda_or_beyond_the_buckets():
    # Against the dense masked forward, not the eager engine it falls back to; and no graph is
    # captured for a batch beyond the buckets.
    model = network("gated-dense", seed=4)
    x = inputs(3, seed=4)  # beyond the largest bucket: eager on any device
    with torch.no_grad():
        want = model(x).logits.cpu()
    graphed = CudaGraphSkipNetwork(TritonSkipNetwork(model, torch.float32), buckets=(1, 2))
    torch.testing.assert_close(graphed(x).logits.cpu(), want, atol=1e-4, rtol=1e-4)
    assert graphed._captured == {}


@pytest.mark.skipif(torch.cuda.is_available(), reason="compiled on the GPU by the tests above")
def test_kernels_compile_for_sm90_without_a_gpu():
    # The interpreter runs numpy: compiling (Triton + ptxas on the CPU) catches what it cannot.
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, "-m", "tests.models.compile_kernels"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(lines) >= 8
    assert all("'pipelined': True" in line for line in lines if "gemm" in line), lines


# ---- the issue's size, on a GPU ----------------------------------------------------------


def _issue_layer(batch: int, density: float):
    from benchmarks.cuda_cases import _identity_readout
    from benchmarks.skip import layer_model

    torch.manual_seed(0)
    model = _identity_readout(layer_model(4096, 128, 128, 4096).cuda())  # logits = hidden
    x = torch.randn(batch, 4096, device="cuda")
    gated = model.layers[0]
    with torch.no_grad():
        logits = gated.gater(x).flatten()
    tau = -1e9 if density >= 1 else float(torch.quantile(logits, 1 - density))
    gated.threshold.fill_(tau)
    return model, x


@pytest.mark.gpu
@needs_compiled_cuda
@pytest.mark.parametrize("batch", [1, 16, 256])
@pytest.mark.parametrize("density", [1.0, 0.1])
def test_bf16_at_the_issue_size(batch, density):
    model, x = _issue_layer(batch, density)
    out = TritonSkipNetwork(model, torch.bfloat16)(x)
    with torch.no_grad():
        want = model(x)
    error = float((out.logits - want.logits).abs().max())
    assert error <= 3e-2 * float(want.logits.abs().max())
    assert torch.equal(out.active_blocks, active_blocks_of([t.gates for t in want.traces]))


@pytest.mark.gpu
@needs_compiled_cuda
@pytest.mark.parametrize(("batch", "density"), [(1, 0.1), (3, 0.1), (16, 0.1), (256, 0.5)])
def test_cuda_graph_replay_equals_eager(batch, density):
    # At 256 and 50 % eager takes the batch route (a host sync) and the capture cannot:
    # the graph keeps the per-example routes, with the same logits within bf16's tolerance.
    model, x = _issue_layer(batch, density)
    skip = TritonSkipNetwork(model, torch.bfloat16)
    graphed = CudaGraphSkipNetwork(skip, buckets=(1, 4, 16, 256))
    eager = skip(x)
    scale = float(eager.logits.abs().max())
    for _ in range(2):  # capture on the first call, replay on both
        replayed = graphed(x)
        assert float((replayed.logits - eager.logits).abs().max()) <= 3e-2 * scale
        assert torch.equal(replayed.active_blocks, eager.active_blocks)
    # A second input through the same graph: the replay reads the new input.
    x2 = torch.randn_like(x)
    want2 = skip(x2).logits
    assert float((graphed(x2).logits - want2).abs().max()) <= 3e-2 * float(want2.abs().max())


@pytest.mark.gpu
@needs_compiled_cuda
@pytest.mark.parametrize("batch", [1, 4])
def test_last_program_stages_agree_over_many_replays(batch):
    # The fused gater's gate stage and the read-out after the consumer run in whichever
    # program of their launch finishes last (a completion counter that resets itself): a
    # missing release / acquire, or a counter left dirty, shows as a replay that differs.
    from benchmarks.skip import layer_model

    torch.manual_seed(0)
    model = layer_model(4096, 128, 128, 4096).cuda()
    x = torch.randn(batch, 4096, device="cuda")
    gated = model.layers[0]
    with torch.no_grad():
        gated.threshold.fill_(float(torch.quantile(gated.gater(x).flatten(), 0.9)))
        want = model(x).logits
    skip = TritonSkipNetwork(model, torch.bfloat16)
    graphed = CudaGraphSkipNetwork(skip, buckets=(batch,))
    first = graphed(x)
    assert float((first.logits - want).abs().max()) <= 3e-2 * float(want.abs().max())
    for _ in range(300):
        again = graphed(x)
        assert torch.equal(again.active_blocks, first.active_blocks)
        torch.testing.assert_close(again.logits, first.logits, atol=1e-3, rtol=1e-3)
    assert int(skip._done.abs().sum()) == 0


def test_a_model_trained_on_the_served_gates_runs_on_triton(tmp_path):
    from tests.training.conftest import make_bundle
    from training.settings import TrainSettings
    from training.trainer import Trainer

    bundle = make_bundle()
    layer = {"blocks": 16, "block_size": 8, "gater_hidden": 4, "activation": "relu"}
    config = GatedNetworkConfig.from_dict({"input_size": 12, "num_classes": 3,
                                           "target_density": 0.25, "layers": [layer] * 2})
    settings = TrainSettings(epochs=1, deterministic_epochs=2, batch_size=32,
                             optimizer="adam", lr=0.01)
    model = Trainer(config, settings, bundle, tmp_path, progress=False,
                    log=lambda *a, **k: None).fit().model.eval().to(DEVICE)
    for path in ("gemv", "grouped"):
        x = bundle.test.x[:17].to(DEVICE)
        assert_matches(model, x, TritonSkipNetwork(model, torch.float32, path=path)(x))


# An off block's weights poisoned with NaN (see test_off_blocks_are_never_read.py) must not
# reach the logits: the kernels compute only the (example, block) pairs that are on. A gated
# layer that reads a gated layer multiplies its whole input, zeros of off blocks included (the
# reports count it so: gated_reads_all_inputs), so its input columns of off blocks are read.
@pytest.mark.parametrize("path", ["gemv", "grouped"])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_the_kernels_never_read_the_weights_of_off_blocks(layout, path, request):
    from .test_off_blocks_are_never_read import mixed, poisoned

    if layout == "gated-gated":
        request.applymarker(pytest.mark.xfail(
            strict=True, reason="a gated layer reads every input unit of the gated layer "
                                "before it"))
    model = network(layout, seed=2).cpu()
    x = torch.randn(200, 12, generator=torch.Generator().manual_seed(2))
    checked = [example for example in x.split(1) if mixed(model, example)][:3]
    assert len(checked) >= 2, "too few examples with blocks on and off in every layer"
    for example in checked:
        engine = TritonSkipNetwork(poisoned(model, example).to(DEVICE), torch.float32,
                                   path=path, dense_from=2.0)
        got = engine(example.to(DEVICE)).logits.cpu()
        assert torch.isfinite(got).all(), "an off block's weights were read"
        torch.testing.assert_close(got, model(example).logits, atol=1e-5, rtol=1e-5)


def test_the_poison_is_seen_by_the_kernels_dense_route():
    from .test_off_blocks_are_never_read import mixed, poisoned

    model = network("gated-dense", seed=2).cpu()
    x = next(e for e in torch.randn(100, 12, generator=torch.Generator().manual_seed(2)).split(1)
             if mixed(model, e))
    engine = TritonSkipNetwork(poisoned(model, x).to(DEVICE), torch.float32, path="grouped",
                               dense_from=1e-9)
    got = engine(x.to(DEVICE)).logits.cpu()
    assert not torch.allclose(got, model(x).logits, atol=1e-5, rtol=1e-5)
