"""Every endpoint through the app's own client: answers, and that they agree with the model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from models.compute import compute_reports
from models.gated_artifact import load_gated_network
from service.app import create_app

from .conftest import CLASSES, INPUT_SIZE, settings


def inputs(rows: int, seed: int = 0) -> list[list[float]]:
    return np.random.default_rng(seed).normal(size=(rows, INPUT_SIZE)).round(4).tolist()


def reference(repository, name: str, version: str, x: list[list[float]]):
    """The dense masked forward of the artifact (models.GatedNetwork.eval) and the compute
    reports for its gates, routed as the engine routes a batch of that size."""
    model, _ = load_gated_network(repository / name / version)
    out = model(torch.tensor(x, dtype=torch.float32))
    active = torch.stack([(t.gates != 0).sum(-1) for t in out.traces], -1)
    return torch.softmax(out.logits, -1).detach().numpy(), active


def test_health_server_and_model_metadata(client):
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").status_code == 200
    server = client.get("/v2").json()
    assert server["name"] == "sparsegate" and "binary_tensor_data" in server["extensions"]
    meta = client.get("/v2/models/tiny").json()
    assert meta["versions"] == ["2"]  # the newest version is loaded at start-up
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, INPUT_SIZE]}]
    assert {o["name"] for o in meta["outputs"]} >= {"probabilities", "executed_macs"}
    assert client.get("/v2/models/tiny/versions/2").json()["versions"] == ["2"]
    assert client.get("/v2/models/tiny/ready").status_code == 200
    assert client.get("/v2/models/tiny/versions/2/ready").status_code == 200
    assert client.get("/v2/models/tiny/versions/1/ready").status_code == 404
    assert client.get("/v2/models/tiny/config").json()["input"][0]["dims"] == [INPUT_SIZE]


def test_v1_lists_models_with_their_expected_saving(client):
    models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    assert set(models) == {"tiny", "other"}
    version = models["tiny"]["versions"][0]
    assert version["version"] == "2" and version["expected_density"] == [0.5, 0.5]
    assert 0 < version["expected_saved_fraction"] < 1


@pytest.mark.parametrize("rows", [1, 5])
def test_v1_predict_matches_the_model_and_reports_each_example(client, repository, rows):
    x = inputs(rows)
    response = client.post("/v1/models/tiny:predict", json={"instances": x})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model_name"], body["model_version"]) == ("tiny", "2")
    probabilities, active = reference(repository, "tiny", "2", x)
    got = np.array([p["probabilities"] for p in body["predictions"]])
    np.testing.assert_allclose(got, probabilities, atol=1e-5)  # float summation order only
    assert [p["class"] for p in body["predictions"]] == probabilities.argmax(-1).tolist()
    for prediction, row_active in zip(body["predictions"], active.tolist(), strict=True):
        report = prediction["compute"]
        assert report["active_blocks"] == row_active
        assert report["dense_macs"] == compute_reports(
            load_gated_network(repository / "tiny" / "2")[0].config,
            torch.tensor([row_active]))[0].dense_macs
        assert report["saved_fraction"] == pytest.approx(
            1 - report["executed_macs"] / report["dense_macs"])
    timings = body["timings"]
    assert timings["batch_size"] >= rows and timings["total_ms"] >= timings["compute_ms"] > 0


def test_v1_and_v2_address_versions(admin_client, repository):
    client = admin_client
    x = inputs(2)
    assert client.post("/v2/repository/models/tiny/load",
                       json={"parameters": {"version": "1"}}).status_code == 200
    one = client.post("/v1/models/tiny/versions/1:predict", json={"instances": x}).json()
    two = client.post("/v1/models/tiny/versions/2:predict", json={"instances": x}).json()
    assert (one["model_version"], two["model_version"]) == ("1", "2")
    np.testing.assert_allclose([p["probabilities"] for p in one["predictions"]],
                               reference(repository, "tiny", "1", x)[0], atol=1e-5)
    v2 = client.post("/v2/models/tiny/versions/1/infer", json={"inputs": [
        {"name": "input", "shape": [2, INPUT_SIZE], "datatype": "FP32", "data": x}]}).json()
    assert v2["model_version"] == "1"


@pytest.mark.parametrize("flat", [True, False])
def test_v2_infer_json(client, repository, flat):
    x = inputs(3)
    data = np.array(x).reshape(-1).tolist() if flat else x
    response = client.post("/v2/models/tiny/infer", json={"id": "r1", "inputs": [
        {"name": "input", "shape": [3, INPUT_SIZE], "datatype": "FP32", "data": data}]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == "r1" and body["model_name"] == "tiny"
    outputs = {o["name"]: o for o in body["outputs"]}
    probabilities, active = reference(repository, "tiny", "2", x)
    assert outputs["probabilities"]["shape"] == [3, CLASSES]
    np.testing.assert_allclose(np.reshape(outputs["probabilities"]["data"], (3, CLASSES)),
                               probabilities, atol=1e-5)
    assert np.reshape(outputs["active_blocks"]["data"], (3, 2)).tolist() == active.tolist()
    reports = json.loads(body["parameters"]["compute_reports"])
    assert [r["executed_macs"] for r in reports] == outputs["executed_macs"]["data"]
    assert body["parameters"]["executed_macs"] == sum(outputs["executed_macs"]["data"])
    assert body["parameters"]["dense_macs"] == 3 * reports[0]["dense_macs"]


def test_v2_infer_binary_extension_both_ways(client, repository):
    x = np.array(inputs(2), dtype=np.float32)
    header = json.dumps({"inputs": [{"name": "input", "shape": [2, INPUT_SIZE],
                                     "datatype": "FP32",
                                     "parameters": {"binary_data_size": x.nbytes}}],
                         "outputs": [{"name": "probabilities",
                                      "parameters": {"binary_data": True}},
                                     {"name": "predicted_class"}]}).encode()
    response = client.post("/v2/models/tiny/infer", content=header + x.tobytes(),
                           headers={"Inference-Header-Content-Length": str(len(header)),
                                    "Content-Type": "application/octet-stream"})
    assert response.status_code == 200, response.text
    length = int(response.headers["inference-header-content-length"])
    body = json.loads(response.content[:length])
    assert [o["name"] for o in body["outputs"]] == ["probabilities", "predicted_class"]
    probabilities = np.frombuffer(response.content[length:], dtype="<f4").reshape(2, CLASSES)
    np.testing.assert_allclose(probabilities, reference(repository, "tiny", "2",
                                                        x.tolist())[0], atol=1e-5)
    assert body["outputs"][1]["data"] == probabilities.argmax(-1).tolist()


def test_a_request_larger_than_a_forward_is_answered_as_if_run_in_one(repository):
    """Seven examples through forwards of at most two, on both APIs: the same answers, gate
    patterns and compute reports as one forward gives, and timings that count every part."""
    x = inputs(7, seed=3)
    answers = {}
    for limit in (2, 256):
        with TestClient(create_app(settings(repository, max_batch_size=2,
                                            max_forward_examples=limit))) as client:
            v1 = client.post("/v1/models/tiny:predict?gates=true", json={"instances": x})
            v2 = client.post("/v2/models/tiny/infer", json={"inputs": [
                {"name": "input", "shape": [7, INPUT_SIZE], "datatype": "FP32", "data": x}]})
            batches = client.get("/metrics").text
        assert v1.status_code == v2.status_code == 200, (v1.text, v2.text)
        answers[limit] = v1.json(), v2.json(), batches
    (v1, v2, batches), (v1_whole, v2_whole, _) = answers[2], answers[256]
    assert [p["compute"] for p in v1["predictions"]] == [
        p["compute"] for p in v1_whole["predictions"]]
    np.testing.assert_allclose([p["probabilities"] for p in v1["predictions"]],
                               reference(repository, "tiny", "2", x)[0], atol=1e-5)
    outputs = {o["name"]: o["data"] for o in v2["outputs"]}
    assert outputs == {o["name"]: o["data"] for o in v2_whole["outputs"]}
    assert v1["timings"]["batch_size"] == v2["parameters"]["batch_size"] == 2
    assert v1_whole["timings"]["batch_size"] == 7
    # four forwards of 2, 2, 2 and 1 examples per request: the examples-per-forward histogram
    # counts 8 forwards over the two requests (warm-up forwards are not counted)
    assert 'sparsegate_batch_size_count{model="tiny"} 8.0' in batches


def test_metrics_count_requests_batches_and_savings(client):
    client.post("/v1/models/tiny:predict", json={"instances": inputs(4)})
    client.post("/v1/models/nope:predict", json={"instances": inputs(1)})
    text = client.get("/metrics").text
    assert 'sparsegate_request_seconds_count{api="v1",model="tiny"} 1.0' in text
    assert 'sparsegate_examples_total{model="tiny"} 4.0' in text
    assert 'sparsegate_saved_fraction_count{model="tiny"} 4.0' in text
    assert 'sparsegate_active_block_fraction_count{model="tiny"} 4.0' in text
    assert 'sparsegate_batch_size_count{model="tiny"}' in text
    assert 'sparsegate_errors_total{route="/v1/models/{name}:predict",status="404"} 1.0' in text
    assert "sparsegate_model_versions_loaded 2.0" in text


def test_openapi_schema_declares_the_hand_parsed_bodies(client):
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/v2/models/{name}/infer"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"]["$ref"].endswith("/InferenceRequest")
    assert {"InferenceRequest", "RequestInput", "PredictRequest"} <= set(
        schema["components"]["schemas"])


def test_openapi_documents_the_errors_the_app_sends(client):
    schema = client.get("/openapi.json").json()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert "422" not in responses and "4XX" in responses, (method, path)
    infer = schema["paths"]["/v2/models/{name}/infer"]["post"]["responses"]
    assert "503" in infer
    metrics = schema["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert all(kind.startswith("text/plain") for kind in metrics), metrics


def test_kserve_v1_liveness_and_model_readiness(client):
    assert client.get("/").json() == {"status": "alive"}
    assert client.get("/v1/models/tiny").json() == {"name": "tiny", "version": "2",
                                                   "ready": True}
    missing = client.get("/v1/models/absent")
    assert missing.status_code == 404 and "absent" in missing.json()["error"]


def test_the_body_may_name_the_model_the_path_serves_and_no_other(client):
    body = {"model_name": "tiny", "model_version": "2",
            "inputs": [{"name": "input", "shape": [1, INPUT_SIZE], "datatype": "FP32",
                        "data": inputs(1)[0]}]}
    assert client.post("/v2/models/tiny/infer", json=body).status_code == 200
    assert client.post("/v2/models/tiny/versions/2/infer", json=body).status_code == 200
    other = client.post("/v2/models/tiny/infer", json={**body, "model_name": "other"})
    assert other.status_code == 400 and "'other'" in other.json()["error"]
    old = client.post("/v2/models/tiny/infer", json={**body, "model_version": "1"})
    assert old.status_code == 400
    assert "/v2/models/tiny/versions/1/infer" in old.json()["error"]


def test_both_apis_tell_the_engine_a_forward_is_coming_once_the_body_is_read(client,
                                                                            monkeypatch):
    """So the CPU engine's workers are awake when the forward starts (`expect_forward`)."""
    from service.engine import ModelEngine
    from service.inference import FORWARD_WITHIN_S

    told = []
    monkeypatch.setattr(ModelEngine, "expect_forward",
                        lambda self, within_s: told.append((self.name, within_s)))
    x = inputs(2)
    assert client.post("/v1/models/tiny:predict", json={"instances": x}).status_code == 200
    assert client.post("/v2/models/tiny/infer", json={"inputs": [
        {"name": "input", "shape": [2, INPUT_SIZE], "datatype": "FP32", "data": x}]}
    ).status_code == 200
    assert client.post("/v1/models/missing:predict", json={"instances": x}).status_code == 404
    assert told == [("tiny", FORWARD_WITHIN_S)] * 2


@pytest.mark.parametrize("lone", [False, True])
def test_both_apis_read_json_on_two_threads_where_a_request_is_alone(client, monkeypatch, lone):
    """A request alone reads a long JSON tensor on two threads; beside others, whose forwards
    want the second core, on one (`reader_threads`)."""
    from service import routes_v1, routes_v2

    monkeypatch.setattr("service.off_loop._CPUS", 2)
    asked = []
    for module, name in ((routes_v1, "decode_predict"), (routes_v2, "decode_infer")):
        monkeypatch.setattr(module, "alone", lambda request: lone)
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, real=real, **k: asked.append(
            k["reader_threads"]) or real(*a, **k))
    x = inputs(2)
    assert client.post("/v1/models/tiny:predict", json={"instances": x}).status_code == 200
    assert client.post("/v2/models/tiny/infer", json={"inputs": [
        {"name": "input", "shape": [2, INPUT_SIZE], "datatype": "FP32", "data": x}]}
    ).status_code == 200
    assert asked == [2 if lone else 1] * 2
