"""sparsegate's onnxruntime operators (models/skip/csrc/ort_ops.c) against numpy, node by node:
every activation, blocks of any size (padded to the kernels' tiles inside), readers narrower
and wider than the panels, odd batch sizes, gates all on, all off and on with value 0, and the
errors a graph author meets. The whole exported graph is tested in
tests/training/test_onnx_export.py (`custom_ops=True`)."""

import os
import subprocess
import sys

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from models.activations import ACTIVATIONS  # noqa: E402
from models.skip import onnx_ops  # noqa: E402

pytestmark = pytest.mark.skipif(not onnx_ops.available(),
                                reason="the operators' library needs a C compiler")
ACTS = {a.code: a for a in ACTIVATIONS.values()}
TOL = 1e-4  # relative to max(1, max |want|): float32 sums in another order


def _activate(code, v):
    return ACTS[code].numpy_(np.array(v, dtype=np.float32))


def graph(op, D, K, S, N, activation, reader_activation, seed=0, weights_as_inputs=False,
          computed=None):
    """One operator node over random weights; returns the model bytes and the weights. With
    `computed` = J, the node takes its optional last input, the (B, J) blocks computed before."""
    rng = np.random.default_rng(seed)
    w = {"W": rng.standard_normal((K, S, D)) / np.sqrt(D), "b": rng.standard_normal((K, S)),
         "R": rng.standard_normal((K, S, N)) / np.sqrt(S), "rb": rng.standard_normal(N)}
    w = {name: array.astype(np.float32) for name, array in w.items()}
    names = ["W", "b"] + (["R", "rb"] if op == onnx_ops.GROUPED_BLOCKS_READ else [])
    attrs = {"activation": activation}
    if op == onnx_ops.GROUPED_BLOCKS_READ:
        attrs["reader_activation"] = reader_activation
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", D]),
              helper.make_tensor_value_info("on", TensorProto.BOOL, ["B", K]),
              helper.make_tensor_value_info("values", TensorProto.FLOAT, ["B", K])]
    initializers = [numpy_helper.from_array(w[n], n) for n in names]
    if weights_as_inputs:
        inputs += [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(w[n].shape))
                   for n in names]
        initializers = []
    if computed:
        inputs.append(helper.make_tensor_value_info("computed", TensorProto.BOOL,
                                                    ["B", computed]))
    node = helper.make_node(op, ["x", "on", "values", *names, *(["computed"] if computed else [])],
                            ["y"], domain=onnx_ops.DOMAIN, **attrs)
    model = helper.make_model(
        helper.make_graph([node], "op", inputs,
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          initializers),
        opset_imports=[helper.make_opsetid("", 18),
                       helper.make_opsetid(onnx_ops.DOMAIN, onnx_ops.DOMAIN_VERSION)],
        ir_version=8)
    return model.SerializeToString(), w


def session(data, threads=None):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    onnx_ops.register(options)
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def want(op, w, x, on, values, activation, reader_activation):
    pre = np.einsum("bd,ksd->bks", x.astype(np.float64), w["W"]) + w["b"]
    h = _activate(activation, pre.astype(np.float32)) * values[:, :, None] * on[:, :, None]
    if op == onnx_ops.GROUPED_BLOCKS:
        return h.reshape(x.shape[0], -1)
    out = np.einsum("bks,ksn->bn", h.astype(np.float64), w["R"]) + w["rb"]
    return _activate(reader_activation, out.astype(np.float32))


def gates(rng, B, K, pattern):
    on = {"random": rng.random((B, K)) < 0.35, "all-on": np.ones((B, K), bool),
          "all-off": np.zeros((B, K), bool)}[pattern]
    values = np.where(on, rng.uniform(0.2, 1.5, (B, K)), 0).astype(np.float32)
    if pattern == "random" and on.any():  # a gate on whose value is 0 (a rectifier at 0)
        values[np.argwhere(on)[0][0], np.argwhere(on)[0][1]] = 0.0
    return on, values


def check(op, D, K, S, N, activation, reader_activation, batches=(1, 2, 17), patterns=(
        "random", "all-on", "all-off"), threads=None):
    data, w = graph(op, D, K, S, N, activation, reader_activation)
    s = session(data, threads)
    rng = np.random.default_rng(1)
    for B in batches:
        for pattern in patterns:
            x = rng.standard_normal((B, D)).astype(np.float32)
            on, values = gates(rng, B, K, pattern)
            (y,), expected = s.run(None, {"x": x, "on": on, "values": values}), want(
                op, w, x, on, values, activation, reader_activation)
            assert y.shape == expected.shape
            scale = max(1.0, float(np.abs(expected).max(initial=0)))
            assert np.abs(y - expected).max(initial=0) <= TOL * scale, (B, pattern)
            if op == onnx_ops.GROUPED_BLOCKS:  # off blocks exactly zero
                off = np.repeat(~on, S, axis=1)
                assert (y[off] == 0).all()


@pytest.mark.parametrize("activation", sorted(ACTS))
@pytest.mark.parametrize("S", [1, 3, 64, 100])
def test_grouped_blocks_any_block_size(activation, S):
    check(onnx_ops.GROUPED_BLOCKS, 7, 5, S, 1, activation, 0)


@pytest.mark.parametrize("N", [1, 10, 64, 128, 130])
@pytest.mark.parametrize("S", [4, 64])
def test_grouped_blocks_read_any_reader_width(N, S):
    check(onnx_ops.GROUPED_BLOCKS_READ, 33, 6, S, N, 1, 3)


@pytest.mark.parametrize("activation", sorted(ACTS))
def test_grouped_blocks_read_every_activation(activation):
    check(onnx_ops.GROUPED_BLOCKS_READ, 9, 4, 64, 10, activation, activation)


def test_the_engine_shape_across_threads_and_batches():
    # The layer the benchmarks time, scaled down in width only: products big enough to be
    # split over the kernels' threads (from 200 000 multiply-adds).
    check(onnx_ops.GROUPED_BLOCKS_READ, 512, 16, 64, 128, 1, 0, batches=(1, 5, 64, 67),
          patterns=("random", "all-on"))


@pytest.mark.parametrize("op", [onnx_ops.GROUPED_BLOCKS, onnx_ops.GROUPED_BLOCKS_READ])
@pytest.mark.parametrize(("J", "Sin"), [(1, 7), (3, 5), (4, 64)])
def test_after_a_gated_layer_each_pair_reads_only_the_input_blocks_computed_there(op, J, Sin):
    """With `computed` (B, J), a pair multiplies only its example's input blocks computed
    before: x holds NaN in the others, which a read would spread; examples with every block
    computed read whole rows (the engine's rows kernel), the others by blocks."""
    D, K, S, N = J * Sin, 5, 64, 10
    data, w = graph(op, D, K, S, N, 1, 0, computed=J)
    s = session(data)
    rng = np.random.default_rng(J * 100 + Sin)
    for B in (1, 2, 17, 64):
        x = rng.standard_normal((B, D)).astype(np.float32)
        computed = rng.random((B, J)) < 0.5
        computed[0] = True  # a whole row
        if B > 1:
            computed[1] = False  # nothing computed before: zeros in, biases out
        on, values = gates(rng, B, K, "random")
        expected = want(op, w, np.where(np.repeat(computed, Sin, axis=1), x, 0), on, values,
                        1, 0)
        x[~np.repeat(computed, Sin, axis=1)] = np.nan
        (y,) = s.run(None, {"x": x, "on": on, "values": values, "computed": computed})
        assert np.isfinite(y).all(), "an input block not computed before was read"
        scale = max(1.0, float(np.abs(expected).max(initial=0)))
        assert np.abs(y - expected).max(initial=0) <= TOL * scale, B


def test_computed_blocks_that_do_not_divide_the_input_are_refused():
    data, _ = graph(onnx_ops.GROUPED_BLOCKS, 6, 3, 64, 1, 1, 0, computed=4)
    with pytest.raises(Exception, match="computed must be"):
        session(data).run(None, {"x": np.zeros((2, 6), np.float32), "on": np.ones((2, 3), bool),
                                 "values": np.ones((2, 3), np.float32),
                                 "computed": np.ones((2, 4), bool)})


def test_an_empty_batch():
    for op in (onnx_ops.GROUPED_BLOCKS, onnx_ops.GROUPED_BLOCKS_READ):
        data, _ = graph(op, 5, 3, 64, 10, 1, 0)
        (y,) = session(data).run(None, {"x": np.zeros((0, 5), np.float32),
                                        "on": np.zeros((0, 3), bool),
                                        "values": np.zeros((0, 3), np.float32)})
        assert y.shape[0] == 0


def test_weights_must_be_initializers():
    data, _ = graph(onnx_ops.GROUPED_BLOCKS_READ, 5, 3, 64, 10, 1, 0, weights_as_inputs=True)
    with pytest.raises(Exception, match="weight must be an initializer"):
        session(data)


def test_a_bad_activation_code_is_refused():
    data, _ = graph(onnx_ops.GROUPED_BLOCKS, 5, 3, 64, 1, 9, 0)
    with pytest.raises(Exception, match="activation code"):
        session(data)


def test_gates_of_the_wrong_shape_are_refused():
    data, _ = graph(onnx_ops.GROUPED_BLOCKS_READ, 5, 3, 64, 10, 1, 0)
    s = session(data)
    x = np.zeros((4, 5), np.float32)
    with pytest.raises(Exception, match="on must be"):
        s.run(None, {"x": x, "on": np.zeros((3, 3), bool), "values": np.zeros((4, 3),
                                                                              np.float32)})


def test_without_the_library_registering_says_why(monkeypatch):
    monkeypatch.setattr(onnx_ops, "library_path", lambda: None)
    with pytest.raises(onnx_ops.OperatorsUnavailable, match="C compiler"):
        onnx_ops.register(ort.SessionOptions())
    data, _ = graph(onnx_ops.GROUPED_BLOCKS, 5, 3, 64, 1, 1, 0)
    with pytest.raises(onnx_ops.OperatorsUnavailable):
        onnx_ops.register_for(ort.SessionOptions(), data)


def test_only_graphs_that_use_the_operators_register_them(monkeypatch):
    data, _ = graph(onnx_ops.GROUPED_BLOCKS, 5, 3, 64, 1, 1, 0)
    assert onnx_ops.uses_operators(data)
    portable = helper.make_model(helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "sparsegate", [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])]),
        producer_name="sparsegate").SerializeToString()
    assert not onnx_ops.uses_operators(portable)
    monkeypatch.setattr(onnx_ops, "library_path", lambda: None)  # never built for it
    assert onnx_ops.register_for(ort.SessionOptions(), portable) is False


SCRIPT = """
import sys
sys.path.insert(0, {root!r})
sys.path.insert(0, {tests!r})
import test_onnx_operators as t
t.check(t.onnx_ops.GROUPED_BLOCKS_READ, 70, 5, 64, 10, 2, 1, batches=(1, 9))
t.check(t.onnx_ops.GROUPED_BLOCKS_READ, 70, 5, 64, 128, 3, 0, batches=(1, 9))
print("ok")
"""


def _sets():
    from models.skip import c_kernels

    kernels = c_kernels.load()
    return kernels.kernel_sets if kernels is not None else ()


@pytest.mark.parametrize("kernel_set", _sets())
def test_every_instruction_set(kernel_set):
    # The library picks its set once per process (kernels pack weights for it): one process
    # per set.
    from pathlib import Path

    here = Path(__file__).resolve()
    script = SCRIPT.format(root=str(here.parents[2]), tests=str(here.parent))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "SPARSEGATE_KERNEL_SET": kernel_set},
                          timeout=300)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-2000:]


def test_an_instruction_set_the_cpu_lacks_is_refused():
    script = ("from models.skip import onnx_ops; import onnxruntime as ort\n"
              "o = ort.SessionOptions()\n"
              "try:\n    onnx_ops.register(o)\nexcept Exception as e:\n    print(e)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "SPARSEGATE_KERNEL_SET": "none"},
                          timeout=120)
    assert "names no instruction set" in done.stdout, done.stdout + done.stderr


@pytest.mark.parametrize("threads", ["1", "2"])
def test_the_operator_threads_setting(threads, monkeypatch):
    # One thread or two, the same products (the setting is read as a session creates the
    # kernel); a split product here is one of more than 200 000 multiply-adds.
    monkeypatch.setenv("SPARSEGATE_OPERATOR_THREADS", threads)
    check(onnx_ops.GROUPED_BLOCKS_READ, 512, 16, 64, 128, 1, 0, batches=(64,),
          patterns=("all-on",))


def test_gates_given_as_raw_bytes_other_than_one_count_as_on():
    # A bool tensor's bytes may hold 2 or 255 (numpy's bool view of bytes, fed as they are): on,
    # and counted once.
    data, w = graph(onnx_ops.GROUPED_BLOCKS_READ, 6, 4, 64, 10, 1, 0)
    raw = np.array([[0, 2, 0, 255], [1, 0, 7, 0], [0, 0, 0, 0]], np.uint8)
    x = np.random.default_rng(3).standard_normal((3, 6)).astype(np.float32)
    values = (raw != 0).astype(np.float32)
    (y,) = session(data).run(None, {"x": x, "on": raw.view(bool), "values": values})
    expected = want(onnx_ops.GROUPED_BLOCKS_READ, w, x, raw != 0, values, 1, 0)
    assert np.abs(y - expected).max() <= TOL * max(1.0, float(np.abs(expected).max()))
