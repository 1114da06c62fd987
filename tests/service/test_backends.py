"""The server on each CPU backend: the same requests answered with the same predictions, gates
and compute-report contract, whether the models run in the CPU skipping engine (`--backend
torch`) or from their exported model.onnx in onnxruntime (`--backend onnxruntime`); and an ONNX
model that cannot serve is refused at load with the reason."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from models.artifact import ArtifactError, read_artifact, write_artifact
from models.gated_artifact import save_gated_network
from service.app import create_app
from service.engine import ModelEngine

from ..tiny_networks import OVERFLOW, overflowing_network
from .conftest import CLASSES, INPUT_SIZE, chained_network, settings, tiny_network
from .test_api import inputs

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def answers(repository, backend: str, model: str, rows: list[list[float]]) -> dict:
    app = create_app(settings(repository, backend=backend, models=[model]))
    with TestClient(app) as client:
        listed = client.get("/v1/models").json()["models"][0]["versions"][0]
        response = client.post(f"/v1/models/{model}:predict", json={"instances": rows})
        assert response.status_code == 200, response.text
        return {"backend": listed["backend"], "predictions": response.json()["predictions"]}


@pytest.mark.parametrize("model", ["tiny", "chained"])
def test_both_backends_answer_the_same_requests_alike(onnx_repository, model):
    for rows in (inputs(1, seed=5), inputs(7, seed=6)):
        native = answers(onnx_repository, "torch", model, rows)
        ort = answers(onnx_repository, "onnxruntime", model, rows)
        assert (native["backend"], ort["backend"]) == ("torch", "onnxruntime")
        for a, b in zip(native["predictions"], ort["predictions"], strict=True):
            np.testing.assert_allclose(a["probabilities"], b["probabilities"], atol=1e-5)
            assert a["class"] == b["class"]
            assert a["compute"]["active_blocks"] == b["compute"]["active_blocks"]
            assert a["compute"]["dense_macs"] == b["compute"]["dense_macs"]
            # Each report counts what its engine ran: the graph computes a batch's union of
            # blocks, or every block past its fallback line, so never fewer.
            assert all(x >= y for x, y in zip(b["compute"]["computed_blocks"],
                                              a["compute"]["computed_blocks"], strict=True))
            assert b["compute"]["executed_macs"] >= a["compute"]["executed_macs"]


def test_a_version_without_model_onnx_is_refused_with_the_command_that_writes_it(
        onnx_repository):
    with pytest.raises(ArtifactError, match="sparsegate-export --model-repository"):
        ModelEngine(onnx_repository / "unexported" / "1", backend="onnxruntime",
                    repository=onnx_repository)


@pytest.mark.parametrize("where", ["absolute", "relative"])
def test_an_onnx_model_that_reads_files_outside_the_artifact_is_refused(
        onnx_repository, tmp_path, monkeypatch, where):
    """A model.onnx whose weights live in "external data" would make onnxruntime open the
    file the model names (a relative name from the server's working directory); the server
    confines that to an empty folder."""
    from onnx import external_data_helper

    monkeypatch.chdir(tmp_path)
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(4096, dtype=np.float32).tobytes())
    config, tensors = read_artifact(onnx_repository / "tiny" / "1")
    graph = onnx.load_from_string((onnx_repository / "tiny" / "1" / "model.onnx").read_bytes())
    weight = graph.graph.initializer[0]
    location = str(secret) if where == "absolute" else secret.name
    external_data_helper.set_external_data(weight, location=location, offset=0,
                                           length=len(weight.raw_data))
    weight.ClearField("raw_data")
    weight.data_location = onnx.TensorProto.EXTERNAL
    root = tmp_path / "repo"
    stored = {k: v for k, v in config.items() if k != "extra_files"}
    write_artifact(root, "tiny", "1", stored, tensors,
                   extra_files={"model.onnx": graph.SerializeToString()})
    with pytest.raises(ArtifactError, match="onnxruntime cannot load the model"):
        ModelEngine(root / "tiny" / "1", backend="onnxruntime", repository=root)


@pytest.mark.parametrize(("backend", "device", "message"), [
    ("triton", "cpu", "runs on a CUDA GPU"),
])
def test_a_backend_the_device_cannot_run_is_refused(onnx_repository, backend, device, message):
    with pytest.raises(RuntimeError, match=message):
        ModelEngine(onnx_repository / "tiny" / "1", device, backend=backend,
                    repository=onnx_repository)


def test_an_artifact_may_name_its_backend_and_the_server_setting_overrides_it(tmp_path):
    from models.skip.onnx_export import export_to_artifact

    root = tmp_path / "repo"
    save_gated_network(tiny_network(1), root, "ort", 1)
    export_to_artifact(root, "ort", 1, serve_with="onnxruntime")
    save_gated_network(tiny_network(2), root, "plain", 1)
    assert read_artifact(root / "ort" / "1")[0]["serving"] == {"backend": "onnxruntime"}

    def backends(setting: str) -> dict[str, str]:
        with TestClient(create_app(settings(root, backend=setting))) as client:
            return {m["name"]: m["versions"][0]["backend"]
                    for m in client.get("/v1/models").json()["models"]}

    assert backends("auto") == {"ort": "onnxruntime", "plain": "torch"}
    assert backends("torch") == {"ort": "torch", "plain": "torch"}


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_an_input_the_model_cannot_compute_is_refused_naming_it(tmp_path, backend):
    # Finite float32 inputs pass the request's checks, but 3e38 can overflow the network's sums:
    # its logits are NaN, which JSON would carry as null probabilities. Refused instead, on
    # both APIs, and the next request is answered as usual.
    from models.skip.onnx_export import export_to_artifact

    root = tmp_path / "repo"
    save_gated_network(overflowing_network(4, input_size=INPUT_SIZE, num_classes=CLASSES),
                       root, "over", 1)
    export_to_artifact(root, "over", 1)
    hostile, fine = [OVERFLOW, OVERFLOW] + [0.5] * (INPUT_SIZE - 2), [0.5] * INPUT_SIZE
    with TestClient(create_app(settings(root, backend=backend))) as client:
        refused = [client.post("/v1/models/over:predict", json={"instances": [fine, hostile]}),
                   client.post("/v2/models/over/infer", json={"inputs": [{
                       "name": "input", "shape": [2, INPUT_SIZE], "datatype": "FP32",
                       "data": fine + hostile}]})]
        for response in refused:
            assert response.status_code == 400, response.text
            error = response.json()["error"]
            assert "example 1 of the request" in error and "not finite" in error, error
        served = client.post("/v1/models/over:predict", json={"instances": [fine, fine]})
        assert served.status_code == 200, served.text
        for prediction in served.json()["predictions"]:
            assert abs(sum(prediction["probabilities"]) - 1.0) < 1e-5


@pytest.mark.parametrize(("serving", "message"), [
    ({"backend": "tensorrt"}, "serving.backend must be one of"),
    ("onnxruntime", "serving.backend must be one of"),
    ({"backend": "triton"}, "runs on a CUDA GPU"),
])
def test_a_backend_an_artifact_cannot_have_is_refused_at_load(tmp_path, serving, message):
    root = tmp_path / "repo"
    save_gated_network(tiny_network(1), root, "tiny", 1, {"serving": serving})
    with pytest.raises(ArtifactError, match=message):
        ModelEngine(root / "tiny" / "1", backend="auto", repository=root)


@pytest.mark.parametrize("model", ["tiny", "chained"])
def test_a_graph_on_sparsegate_operators_answers_as_the_engine(operators_repository, model):
    for rows in (inputs(1, seed=5), inputs(7, seed=6)):
        native = answers(operators_repository, "torch", model, rows)
        ort = answers(operators_repository, "onnxruntime", model, rows)
        for a, b in zip(native["predictions"], ort["predictions"], strict=True):
            np.testing.assert_allclose(a["probabilities"], b["probabilities"], atol=1e-5)
            assert a["compute"]["active_blocks"] == b["compute"]["active_blocks"]
            # Pair by pair: each example computes exactly its own blocks.
            assert b["compute"]["computed_blocks"] == b["compute"]["active_blocks"]


def test_only_a_graph_whose_gated_layers_read_their_own_computed_blocks_is_priced_so(
        operators_repository, onnx_repository):
    """On the operators with no union path, a gated layer after a gated layer reads each
    example's computed input blocks (the graph's metadata says "computed"), and its reports
    price exactly those; the portable graph reads a batch's union there ("union")."""
    from models.skip.onnx_runtime import GATED_READS_KEY, OnnxRuntimeSkipNetwork

    for repository, reads in ((operators_repository, "computed"), (onnx_repository, "union")):
        folder = repository / "chained" / "1"
        data = (folder / "model.onnx").read_bytes()
        assert onnx.load_from_string(data).metadata_props[0].key == GATED_READS_KEY
        assert onnx.load_from_string(data).metadata_props[0].value == reads
        engine = OnnxRuntimeSkipNetwork(data, chained_network(3).config)
        assert engine.reads_all_gated_inputs(1) is False  # a lone example: its own blocks
        assert engine.reads_all_gated_inputs(7) is (reads == "union")


def test_a_graph_on_sparsegate_operators_without_them_says_why(operators_repository,
                                                                monkeypatch):
    from models.skip import onnx_ops

    monkeypatch.setattr(onnx_ops, "library_path", lambda: None)
    with pytest.raises(ArtifactError, match="sparsegate's onnxruntime operators"):
        ModelEngine(operators_repository / "tiny" / "1", backend="onnxruntime",
                    repository=operators_repository)
