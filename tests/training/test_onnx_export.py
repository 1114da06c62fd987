"""The ONNX export: onnxruntime runs the skipping graph with torch's outputs, for every layout and
estimator, any batch size from one graph, all-on and all-off gates; the CLI writes model.onnx into
the artifact and refuses broken ones.

Tolerance: |ORT - torch| <= 1e-4 * max(1, max |torch logit|) on the logits (float32 sums in
another order); active blocks equal exactly.
"""

import json
import shutil

import numpy as np
import onnx
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.artifact import read_artifact, read_extra_file, write_artifact
from models.estimators import ESTIMATORS
from models.gated_artifact import load_gated_network, save_gated_network
from models.gated_config import GatedNetworkConfig
from models.gated_network import GatedNetwork
from models.skip import onnx_export, onnx_ops
from models.skip.cpu import SkipNetwork
from models.skip.onnx_export import (
    ExportError,
    export_dense_onnx,
    export_onnx,
    ort_session,
    reference,
    verify_onnx,
)
from training.export_cli import main
from training.onnx_export import export_to_artifact

from ..tiny_networks import off_block_overflow_case

TOL = 1e-4
D, C = 12, 3


def gated(blocks=8, block_size=4, hidden=5, activation="relu"):
    return {"blocks": blocks, "block_size": block_size, "gater_hidden": hidden,
            "activation": activation}


def dense(width=7, activation="tanh"):
    return {"blocks": width, "block_size": 1, "activation": activation, "gated": False}


LAYOUTS = {
    "gated": [gated()],
    "gated-no-hidden-unit-blocks": [gated(10, 1, 0, "linear")],
    "gated-dense": [gated(), dense()],
    "dense-gated": [dense(9, "relu"), gated(6, 3, 0, "sigmoid")],
    "gated-gated": [gated(), gated(5, 3, 4, "tanh")],
    "gated-gated-dense-gated": [gated(), gated(6, 2, 0, "relu"), dense(5, "relu"),
                                gated(4, 2, 3, "linear")],
    "dense": [dense()],
}


def make_net(layers, estimator="st", density=0.4, seed=0, **estimator_settings):
    """Random weights (scaled up, so gates and units vary), thresholds at the quantile that
    leaves `density` of each layer's gates on for normal inputs."""
    config = GatedNetworkConfig.from_dict({
        "input_size": D, "num_classes": C, "layers": layers, "estimator": estimator,
        "estimator_settings": estimator_settings, "target_density": 0.3})
    torch.manual_seed(seed)
    model = GatedNetwork(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
        calibrate(model, torch.randn(256, D), density)
    return model


@torch.no_grad()
def calibrate(model, x, density):
    for i, layer in enumerate(model.gated_layers):  # in order: later gaters read earlier gates
        logits = model(x).traces[i].logits
        layer.threshold.fill_(float(torch.quantile(logits.flatten(), 1 - density)))


def run(graph, x):
    return ort_session(graph).run(None, {"x": x.numpy()})


def assert_matches(model, graph, x):
    logits, active, computed = run(graph, x)
    want_logits, want_active, _ = reference(model, x)
    assert np.array_equal(active, want_active.numpy())
    scale = max(1.0, float(want_logits.abs().max()))
    assert np.abs(logits - want_logits.numpy()).max() <= TOL * scale
    assert computed.shape == active.shape
    # Per gated layer, every example of the batch computes the same blocks (the union, or all),
    # or (the grouped branch) exactly its own: at least its own either way.
    assert (computed >= active).all()
    for j in range(computed.shape[1]):
        assert (computed[:, j] == computed[:1, j]).all() or (computed[:, j] == active[:, j]).all()
    return logits, active, computed


# Layouts whose every chain of gated layers reads a whole input and is read by a layer that is
# not gated: the grouped branch can take all of them (every layout with a gated layer).
GROUPED_LAYOUTS = {"gated", "gated-no-hidden-unit-blocks", "gated-dense", "dense-gated",
                   "gated-gated", "gated-gated-dense-gated"}
ALWAYS_GROUPED = (1, 1.0)
OPERATORS = onnx_ops.available()  # the graph on sparsegate's onnxruntime operators builds


@pytest.mark.parametrize("fallback", [1.0, -1.0, 0.3], ids=["union", "dense", "auto"])
@pytest.mark.parametrize("grouped", [None, ALWAYS_GROUPED], ids=["no-grouped", "grouped"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_ort_matches_torch_for_every_layout_and_batch(layout, fallback, grouped):
    model = make_net(LAYOUTS[layout])
    graph = export_onnx(model, dense_fallback=fallback, grouped=grouped)  # every batch size
    for batch in (1, 3, 17):
        x = torch.randn(batch, D)
        _, active, computed = assert_matches(model, graph, x)
        if grouped and layout in GROUPED_LAYOUTS:  # pair by pair: exactly its own blocks
            assert np.array_equal(computed, active)
        elif fallback < 0 and not grouped:  # the fallback computes every block
            assert computed.tolist() == [[layer.config.blocks for layer in model.gated_layers]
                                         ] * batch
        if fallback == 1.0 and batch == 1:  # one example: exactly its own blocks
            assert np.array_equal(computed, active)


@pytest.mark.parametrize("custom_ops", [False, OPERATORS], ids=["portable", "operators"])
@pytest.mark.parametrize("estimator", sorted(ESTIMATORS))
def test_grouped_branch_for_every_estimator_and_gate_pattern(estimator, custom_ops):
    # A sigmoid block is not 0 where off: padding rows and off gates must still add nothing.
    model = make_net([dense(9, "relu"), gated(6, 3, 2, "sigmoid"), dense(5, "tanh")],
                     estimator)
    graph = export_onnx(model, grouped=ALWAYS_GROUPED, custom_ops=custom_ops)
    for batch in (1, 5, 17):
        _, active, computed = assert_matches(model, graph, torch.randn(batch, D))
        assert np.array_equal(computed, active)
    for tau, want in ((-1e30, 6), (1e30, 0)):  # all on; all off (no pair at all)
        with torch.no_grad():
            model.layers[1].threshold.fill_(tau)
        _, active, computed = assert_matches(
            model, export_onnx(model, grouped=ALWAYS_GROUPED, custom_ops=custom_ops),
            torch.randn(7, D))
        if estimator != "rectifier" or want == 0:  # max(0, a) may be 0 where the gate is on
            assert active.tolist() == computed.tolist() == [[want]] * 7


@pytest.mark.parametrize("graph_kind", ["union", "grouped", "operators"])
@pytest.mark.parametrize("layout", ["gated-dense", "gated-gated"])
@pytest.mark.parametrize("poison", [float("nan"), 3e38], ids=["nan", "overflow"])
def test_each_example_keeps_to_itself(layout, graph_kind, poison):
    # A batch shares the grouped branch's tables: one example whose activations are NaN or
    # overflow to inf must leave every other example's logits as they are (0 * inf is NaN,
    # so no padding may point at another example's row), wherever it sits in the batch.
    if graph_kind == "operators" and not OPERATORS:
        pytest.skip("the operators' library does not build here")
    model = make_net(LAYOUTS[layout], estimator="sts")  # gate values other than 0 and 1
    graph = export_onnx(model, grouped=None if graph_kind == "union" else ALWAYS_GROUPED,
                        custom_ops=graph_kind == "operators")
    x = torch.randn(9, D)
    want, _, _ = reference(model, x)
    for bad in range(len(x)):
        hostile = x.clone()
        hostile[bad] = poison
        logits, _, _ = run(graph, hostile)
        others = np.arange(len(x)) != bad
        scale = max(1.0, float(want.abs().max()))
        assert np.abs(logits[others] - want.numpy()[others]).max() <= TOL * scale, bad


@pytest.mark.parametrize("graph_kind", ["union", "fallback", "grouped", "operators"])
@pytest.mark.parametrize("before_gated", [False, True], ids=["dense-after", "gated-after"])
def test_an_off_block_adds_nothing_even_where_its_units_overflow(graph_kind, before_gated):
    # The union path computes the batch's union of blocks, the fallback all of them, each
    # example's off ones multiplied by a gate of 0; an off block whose units overflowed to inf
    # must still add exactly 0 (inf * 0 is NaN), so an example's answer does not depend on its
    # batch mates' blocks. As the CPU engine (tests/models/test_skip_inference.py).
    if graph_kind == "operators" and not OPERATORS:
        pytest.skip("the operators' library does not build here")
    model, finite, x = off_block_overflow_case(3, before_gated=before_gated)
    graph = export_onnx(model, grouped=ALWAYS_GROUPED if graph_kind in ("grouped", "operators")
                        else None, custom_ops=graph_kind == "operators",
                        dense_fallback=-1.0 if graph_kind == "fallback" else 1.0)
    with torch.no_grad():
        want = torch.cat([finite(x[:1]).logits, model(x[1:]).logits]).numpy()
    for rows in ([0], [0, 1], [0, 1, 2]):
        logits, _, _ = run(graph, x[rows])
        scale = max(1.0, float(np.abs(want[rows]).max()))
        assert np.abs(logits - want[rows]).max() <= TOL * scale, (rows, logits)


@pytest.mark.parametrize("estimator", sorted(ESTIMATORS))
def test_ort_matches_torch_for_every_estimator(estimator):
    # Non-binary estimators put their smooth value on the blocks: the graph must too.
    layers = [gated()] if estimator == "disarm" else [gated(), gated(5, 3, 4, "tanh")]
    model = make_net(layers, estimator)
    for fallback in (1.0, -1.0):
        graph = export_onnx(model, dense_fallback=fallback)
        for batch in (1, 5):
            assert_matches(model, graph, torch.randn(batch, D))


@pytest.mark.parametrize("later", ["mostly-on", "all-off", "sparse"])
def test_grouped_chain_of_gated_layers(later):
    # Two gated layers, the second reading the first, then a dense layer: in the grouped
    # branch the first is computed pair by pair; the second too where its own pairs are few
    # (sparse, all off), and densely where they are not (mostly on: every block computed).
    model = make_net([gated(8, 4, 5, "relu"), gated(6, 3, 4, "sigmoid"), dense()],
                     density=0.25)
    with torch.no_grad():
        if later == "mostly-on":
            logits = model(torch.randn(256, D)).traces[1].logits
            model.layers[1].threshold.fill_(float(torch.quantile(logits.flatten(), 0.2)))
        elif later == "all-off":
            model.layers[1].threshold.fill_(1e30)
    graph = export_onnx(model, grouped=(16, 0.3))
    for batch in (1, 15, 16, 40):  # 15: the union path; from 16: the grouped branch
        _, active, computed = assert_matches(model, graph, torch.randn(batch, D))
        if batch >= 16:
            assert np.array_equal(computed[:, 0], active[:, 0])
            want = {"mostly-on": np.full(batch, 6), "all-off": np.zeros(batch),
                    "sparse": active[:, 1]}[later]
            assert np.array_equal(computed[:, 1], want)
        elif batch > 1:  # the union path: one count for the whole batch per layer
            assert (computed == computed[:1]).all()


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.skipif(not OPERATORS, reason="sparsegate's operators need a C compiler")
def test_the_graph_on_sparsegate_operators_matches_torch(layout):
    # By default such a graph groups every chain at every batch size: no union path at all,
    # every block computed is one that is on, each by one operator node.
    model = make_net(LAYOUTS[layout])
    graph = export_onnx(model, custom_ops=True)
    nodes = list(_nodes(graph.graph))
    if layout in GROUPED_LAYOUTS:
        assert {n.domain for n in nodes if n.op_type.startswith("GroupedBlocks")} == {
            onnx_ops.DOMAIN}
        assert not any(n.op_type in ("NonZero", "If", "TopK") for n in nodes)
    for batch in (1, 3, 17, 64):
        _, active, computed = assert_matches(model, graph, torch.randn(batch, D))
        if layout in GROUPED_LAYOUTS:
            assert np.array_equal(computed, active)


def test_custom_ops_need_a_grouped_branch():
    with pytest.raises(ExportError, match="custom_ops"):
        export_onnx(make_net(LAYOUTS["gated"]), grouped=None, custom_ops=True)


def _nodes(graph):
    """Every node of a graph and of its If branches, depth first."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _nodes(attr.g)


def test_a_chain_grouped_branch_chooses_per_later_layer():
    # The later layer's If: grouped pairs, or the dense masked product straight from the
    # blocked weight (the outputs agree either way, so the structure is what is checked).
    model = make_net([gated(8, 4, 5, "relu"), gated(6, 3, 4, "sigmoid"), dense()])
    graph = export_onnx(model).graph
    choices = [n for n in _nodes(graph) if n.op_type == "If"
               and n.output[0].startswith("layers.1.grouped")]
    assert len(choices) == 1
    branches = {a.name: a.g for a in choices[0].attribute}
    assert any(n.op_type == "MatMul" and "layers.1.main.weight.blocked" in n.input
               for n in branches["else_branch"].node)
    assert any(n.op_type == "TopK" for n in branches["then_branch"].node)


def test_each_threshold_is_one_initializer_named_by_its_layer():
    # Benchmarks and tools set thresholds by name: a chain's gaters, built both on the union
    # path and in the grouped branch, must share one initializer per layer.
    model = make_net(LAYOUTS["gated-gated-dense-gated"])
    names = [init.name for init in export_onnx(model).graph.initializer]
    thresholds = sorted(n for n in names if ".threshold" in n)
    assert thresholds == ["layers.0.threshold", "layers.1.threshold", "layers.3.threshold"]


def test_active_blocks_equal_the_skip_path():
    model = make_net(LAYOUTS["gated-gated-dense-gated"])
    x = torch.randn(17, D)
    _, active, _ = run(export_onnx(model), x)
    assert np.array_equal(active, SkipNetwork(model)(x).active_blocks.numpy())


@pytest.mark.parametrize("pattern", ["all-on", "all-off"])
@pytest.mark.parametrize("estimator", ["st", "rectifier", "hard-concrete"])
def test_all_on_and_all_off(pattern, estimator):
    model = make_net([gated(), gated(5, 3, 4, "tanh"), dense()], estimator)
    with torch.no_grad():
        for layer in model.gated_layers:
            layer.threshold.fill_(-1e30 if pattern == "all-on" else 1e30)
    graph = export_onnx(model)
    for batch in (1, 4):
        x = torch.randn(batch, D)
        _, active, computed = assert_matches(model, graph, x)
        want = [layer.config.blocks if pattern == "all-on" else 0
                for layer in model.gated_layers]
        assert active.tolist() == [want] * batch
        assert computed.tolist() == [want] * batch


def test_union_path_at_batch_one_and_fallback_for_wide_unions():
    model = make_net([gated(16, 4, 5, "relu"), dense()], density=0.1)
    graph = export_onnx(model)  # default fallback fraction
    ops = {node.op_type for node in graph.graph.node}
    assert {"NonZero", "If"} <= ops  # the selection is in the graph
    x = torch.randn(64, D)
    for i in range(8):  # one example: exactly its active blocks are computed
        _, active, computed = assert_matches(model, graph, x[i:i + 1])
        assert np.array_equal(computed, active)
    with torch.no_grad():
        model.layers[0].threshold.fill_(-1e30)
    _, _, computed = run(export_onnx(model), x[:1])
    assert computed.tolist() == [[16]]  # every block on: the dense masked product


def test_compute_reports_from_ort_outputs():
    from models.compute import compute_reports, dense_macs

    model = make_net([gated(16, 4, 5, "relu"), dense()], density=0.1)
    graph = export_onnx(model)
    x = torch.randn(1, D)
    _, active, computed = run(graph, x)
    (report,) = compute_reports(model.config, torch.from_numpy(active),
                                torch.from_numpy(computed))
    assert report.computed_blocks == report.active_blocks  # batch 1: exactly the active ones
    assert report.executed_macs < dense_macs(model.config)
    x = torch.randn(64, D)
    _, active, computed = run(graph, x)  # a large sparse batch: the grouped branch, pair by pair
    reports = compute_reports(model.config, torch.from_numpy(active), torch.from_numpy(computed))
    assert all(r.computed_blocks == r.active_blocks for r in reports)
    assert sum(r.executed_macs for r in reports) < 64 * dense_macs(model.config)
    _, active, computed = run(export_onnx(model, grouped=None), x)  # wide union: dense fallback
    reports = compute_reports(model.config, torch.from_numpy(active), torch.from_numpy(computed))
    assert all(r.computed_blocks == (16,) for r in reports)


def test_graph_has_a_symbolic_batch_and_the_documented_outputs():
    model = make_net(LAYOUTS["gated-gated"])
    graph = export_onnx(model)
    (inp,) = graph.graph.input
    dims = inp.type.tensor_type.shape.dim
    assert inp.name == "x" and dims[0].dim_param == "batch" and dims[1].dim_value == D
    assert [o.name for o in graph.graph.output] == ["logits", "active_blocks", "computed_blocks"]
    onnx.checker.check_model(graph, full_check=True)
    logits, active, computed = run(graph, torch.randn(17, D))
    assert logits.dtype == np.float32 and logits.shape == (17, C)
    assert active.dtype == np.int64 and active.shape == (17, 2)
    assert computed.dtype == np.int64 and computed.shape == (17, 2)


def test_dense_network_has_empty_block_outputs():
    model = make_net(LAYOUTS["dense"])
    _, active, computed = assert_matches(model, export_onnx(model), torch.randn(3, D))
    assert active.shape == (3, 0) and computed.shape == (3, 0)


def test_dense_baseline_runs_every_block_without_gates():
    model = make_net(LAYOUTS["gated-gated-dense-gated"])
    x = torch.randn(5, D)
    (logits,) = ort_session(export_dense_onnx(model)).run(None, {"x": x.numpy()})
    with torch.no_grad():
        h = x
        for layer in model.layers:
            h = layer.activation(layer.main(h))
        want = model.readout(h)
    assert np.abs(logits - want.numpy()).max() <= TOL * max(1.0, float(want.abs().max()))
    assert {node.op_type for node in export_dense_onnx(model).graph.node} <= {"Gemm", "Relu",
                                                                              "Tanh", "Identity"}


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), density=st.floats(0.0, 1.0), batch=st.integers(1, 20),
       fallback=st.sampled_from([1.0, -1.0, 0.3]),
       grouped=st.sampled_from([None, ALWAYS_GROUPED, (8, 0.3)]), custom_ops=st.booleans())
def test_any_gate_pattern(seed, density, batch, fallback, grouped, custom_ops):
    model = make_net(LAYOUTS["gated-gated-dense-gated"], "sts", density=density, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, D, generator=gen)
    _, _, margins = reference(model, x)
    if any(bool((m <= onnx_export.TIE_RTOL).any()) for m in margins):
        return  # a gate on its threshold may flip between torch and ORT
    custom_ops = custom_ops and OPERATORS and grouped is not None
    assert_matches(model, export_onnx(model, dense_fallback=fallback, grouped=grouped,
                                      custom_ops=custom_ops), x)


def test_verification_refuses_a_wrong_graph():
    model = make_net(LAYOUTS["gated-dense"])
    other = make_net(LAYOUTS["gated-dense"], seed=1)
    batches = onnx_export.verification_batches(model)
    verify_onnx(model, export_onnx(model), batches)
    with pytest.raises(ExportError, match="differ"):
        verify_onnx(model, export_onnx(other), batches)


def test_unknown_opset_is_refused():
    model = make_net(LAYOUTS["gated"])
    with pytest.raises(ExportError, match="opset"):
        export_onnx(model, opset=11)


# --- the CLI and the artifact ----------------------------------------------------------------


@pytest.fixture
def repo(tmp_path):
    model = make_net(LAYOUTS["gated-gated"])
    save_gated_network(model, tmp_path, "tiny", 1, {"metrics": {"test_error": 0.5}})
    save_gated_network(model, tmp_path, "tiny", 2, {"metrics": {"test_error": 0.25}})
    return tmp_path


def test_cli_writes_model_onnx_and_metadata(repo, capsys):
    before, weights_before = read_artifact(repo / "tiny" / "2")
    assert main(["--model-repository", str(repo), "--name", "tiny"]) == 0  # latest: 2
    assert "model.onnx" in capsys.readouterr().out
    assert not (repo / "tiny" / "1" / "model.onnx").exists()
    folder = repo / "tiny" / "2"
    config, weights = read_artifact(folder)
    meta = config["onnx"]
    import onnxruntime

    assert meta["file"] == "model.onnx" and meta["opset"] == onnx_export.DEFAULT_OPSET
    assert meta["onnx_version"] == onnx.__version__
    assert meta["onnxruntime_version"] == onnxruntime.__version__
    assert [i["name"] for i in meta["inputs"]] == ["x"]
    assert [o["name"] for o in meta["outputs"]] == ["logits", "active_blocks", "computed_blocks"]
    check = meta["verification"]
    assert 0 <= check["max_abs_diff"] <= check["tolerance"] and check["examples"] > 0
    # The rest of the artifact is kept.
    assert config["metrics"] == before["metrics"] and config["thresholds"] == before["thresholds"]
    assert weights.keys() == weights_before.keys()
    assert all(torch.equal(weights[k], weights_before[k]) for k in weights)
    # The file is recorded (sha256), loads, and runs like the model.
    data = read_extra_file(folder, "model.onnx")
    model, _ = load_gated_network(folder)
    assert_matches(model, onnx.load_from_string(data), torch.randn(9, D))


@pytest.mark.skipif(not OPERATORS, reason="sparsegate's operators need a C compiler")
def test_cli_exports_a_graph_on_sparsegate_operators(repo, capsys):
    assert main(["--model-repository", str(repo), "--name", "tiny", "--custom-ops"]) == 0
    folder = repo / "tiny" / "2"
    meta = read_artifact(folder)[0]["onnx"]
    assert meta["operators"]["domain"] == onnx_ops.DOMAIN
    assert meta["skipping"]["grouped_from_batch"] == 1
    assert meta["skipping"]["gated_reads"] == "computed"
    graph = onnx.load_from_string(read_extra_file(folder, "model.onnx"))
    assert any(n.domain == onnx_ops.DOMAIN for n in _nodes(graph.graph))
    model, _ = load_gated_network(folder)
    _, active, computed = assert_matches(model, graph, torch.randn(9, D))
    assert np.array_equal(computed, active)
    # Without the flag the graph is the portable one.
    assert main(["--model-repository", str(repo), "--name", "tiny"]) == 0
    assert read_artifact(folder)[0]["onnx"]["operators"] is None
    assert read_artifact(folder)[0]["onnx"]["skipping"]["gated_reads"] == "union"


def test_cli_exports_a_given_version_and_opset_and_keeps_other_extra_files(repo):
    config, tensors = read_artifact(repo / "tiny" / "1")
    write_artifact(repo, "tiny", 1, config, tensors, extra_files={"notes.txt": b"hello"},
                   overwrite=True)
    baseline = repo / "dense.onnx"
    assert main(["--model-repository", str(repo), "--name", "tiny", "--version", "1",
                 "--opset", "20", "--dense-baseline", str(baseline)]) == 0
    config, _ = read_artifact(repo / "tiny" / "1")
    assert config["onnx"]["opset"] == 20
    assert read_extra_file(repo / "tiny" / "1", "notes.txt") == b"hello"
    assert onnx.load(str(baseline)).opset_import[0].version == 20
    # Exporting again replaces model.onnx and its metadata, nothing else.
    assert main(["--model-repository", str(repo), "--name", "tiny", "--version", "1"]) == 0
    assert read_artifact(repo / "tiny" / "1")[0]["onnx"]["opset"] == onnx_export.DEFAULT_OPSET
    assert read_extra_file(repo / "tiny" / "1", "notes.txt") == b"hello"


@pytest.mark.parametrize(("args", "code", "message"), [
    (["--name", "nope"], 1, "no published version of model 'nope'"),
    (["--name", "tiny", "--version", "7"], 1, "has no version 7"),
    (["--name", "../x"], 2, "invalid model name"),
    (["--name", "tiny", "--version", "latest"], 2, "model version must be"),
    (["--name", "tiny", "--opset", "9"], 2, "opset must be"),
])
def test_cli_refuses_bad_requests(repo, capsys, args, code, message):
    assert main(["--model-repository", str(repo), *args]) == code
    assert message in capsys.readouterr().err


def test_cli_refuses_a_missing_repository(tmp_path, capsys):
    assert main(["--model-repository", str(tmp_path / "none"), "--name", "tiny"]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_cli_refuses_broken_artifacts_and_writes_nothing(repo, capsys):
    folder = repo / "tiny" / "2"
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"corrupt!")
    assert main(["--model-repository", str(repo), "--name", "tiny"]) == 1
    assert "sha256" in capsys.readouterr().err
    assert not (folder / "model.onnx").exists()
    config = json.loads((repo / "tiny" / "1" / "config.json").read_text())
    config["kind"] = "something-else"
    (repo / "tiny" / "1" / "config.json").write_text(json.dumps(config))
    assert main(["--model-repository", str(repo), "--name", "tiny", "--version", "1"]) == 1
    assert "not a gated-network artifact" in capsys.readouterr().err


def test_export_writes_nothing_when_verification_fails(repo, monkeypatch):
    other = make_net(LAYOUTS["gated-gated"], seed=3)
    monkeypatch.setattr(onnx_export, "export_onnx", lambda model, opset, **_: export_onnx(other))
    before = (repo / "tiny" / "2" / "config.json").read_bytes()
    with pytest.raises(ExportError, match="differ"):
        export_to_artifact(repo, "tiny")
    assert (repo / "tiny" / "2" / "config.json").read_bytes() == before
    assert not (repo / "tiny" / "2" / "model.onnx").exists()


def test_real_inputs_are_used_where_the_data_set_loads(tmp_path):
    pytest.importorskip("sklearn")
    config = GatedNetworkConfig.from_dict({"input_size": 64, "num_classes": 10,
                                           "layers": [gated(8, 4, 5, "relu")]})
    torch.manual_seed(0)
    model = GatedNetwork(config).eval()
    save_gated_network(model, tmp_path, "digits", 1, {"data": {"name": "digits",
                                                               "source": "sklearn"}})
    _, meta = export_to_artifact(tmp_path, "digits")
    assert "digits test split" in meta["verification"]["inputs"]
    shutil.rmtree(tmp_path / "digits")


def test_a_model_trained_on_the_served_gates_exports_and_matches(tmp_path):
    # Two gated layers of 8-unit blocks through a gater bottleneck (the blocks-narrow shape,
    # small), trained with stochastic then served-gate epochs.
    from training.settings import TrainSettings
    from training.trainer import Trainer

    from .conftest import make_bundle

    bundle = make_bundle(d=D, classes=C)
    config = GatedNetworkConfig.from_dict({
        "input_size": D, "num_classes": C, "target_density": 0.25,
        "layers": [gated(blocks=16, block_size=8, hidden=4)] * 2})
    settings = TrainSettings(epochs=1, deterministic_epochs=2, batch_size=32,
                             optimizer="adam", lr=0.01)
    model = Trainer(config, settings, bundle, tmp_path, progress=False,
                    log=lambda *a, **k: None).fit().model.eval()
    for grouped in (None, ALWAYS_GROUPED):
        graph = export_onnx(model, grouped=grouped)
        for batch in (1, 17, 64):
            assert_matches(model, graph, bundle.test.x[:batch])
