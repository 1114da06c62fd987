"""The public routes the gate-map page is built on: predict's gate patterns (?gates=true), a
version's labelled examples and card, and the last minute of traffic."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from models.artifact import ArtifactError
from models.gated_artifact import load_gated_network, save_gated_network
from models.labelled_examples import read_examples
from service.app import create_app
from service.engine import BatchResult, ModelEngine
from service.recent_traffic import RecentTraffic
from tests.hostile_artifacts import copy_model, fifo_instead_of, within

from .conftest import CLASSES, INPUT_SIZE, recorded_examples, settings, tiny_network
from .test_api import inputs


def reference_indices(repository, name: str, version: str, x: list[list[float]]):
    """Per example, per gated layer, the blocks the dense masked forward turns on."""
    model, _ = load_gated_network(repository / name / version)
    traces = model(torch.tensor(x, dtype=torch.float32)).traces
    return [[torch.nonzero(t.gates[row] != 0).flatten().tolist() for t in traces]
            for row in range(len(x))]


@pytest.mark.parametrize("rows", [1, 5])
@pytest.mark.parametrize("path", ["/v1/models/tiny:predict",
                                  "/v1/models/tiny/versions/2:predict"])
def test_predict_says_which_blocks_each_layer_turned_on(client, repository, rows, path):
    x = inputs(rows, seed=rows)
    body = client.post(f"{path}?gates=true", json={"instances": x}).json()
    expected = reference_indices(repository, "tiny", "2", x)
    for prediction, indices in zip(body["predictions"], expected, strict=True):
        report = prediction["compute"]
        assert report["active_block_indices"] == indices
        assert [len(layer) for layer in indices] == report["active_blocks"]
    # Asked for nothing, the answer is what it always was.
    plain = client.post(path, json={"instances": x}).json()
    assert all("active_block_indices" not in p["compute"] for p in plain["predictions"])
    assert [p["probabilities"] for p in plain["predictions"]] == \
        [p["probabilities"] for p in body["predictions"]]


def test_a_gates_value_that_is_not_a_boolean_is_a_400(client):
    response = client.post("/v1/models/tiny:predict?gates=maybe",
                           json={"instances": inputs(1)})
    assert response.status_code == 400 and "gates" in response.json()["error"]


def test_a_backend_that_reports_counts_only_says_null(onnx_repository):
    app = create_app(settings(onnx_repository, backend="onnxruntime", models=["tiny"]))
    with TestClient(app) as client:
        body = client.post("/v1/models/tiny:predict?gates=true",
                           json={"instances": inputs(2)}).json()
    assert [p["compute"]["active_block_indices"] for p in body["predictions"]] == [None, None]


def test_a_batch_hands_each_request_its_own_rows_of_gates():
    gates = [torch.arange(12.0).reshape(3, 4), np.eye(3)]
    result = BatchResult(np.zeros((3, 2)), np.zeros((3, 2)), ["r0", "r1", "r2"], 1.0, gates)
    mine = result.rows(1, 3)
    assert mine.reports == ["r1", "r2"]
    assert mine.gates[0].tolist() == [[4, 5, 6, 7], [8, 9, 10, 11]]
    assert mine.gates[1].tolist() == [[0, 1, 0], [0, 0, 1]]
    assert result.rows(0, 3) is result


def test_examples_are_the_ones_the_artifact_records(client, repository):
    body = client.get("/v1/models/tiny/examples").json()
    folder = repository / "tiny" / "2"
    recorded = read_examples(folder, load_gated_network(folder)[1], input_size=INPUT_SIZE,
                             num_classes=CLASSES)
    assert (body["model_name"], body["model_version"], body["split"]) == ("tiny", "2", "test")
    assert [e["label"] for e in body["examples"]] == recorded.labels.tolist()
    np.testing.assert_array_equal(np.array([e["input"] for e in body["examples"]],
                                           dtype=np.float32), recorded.inputs)
    assert client.get("/v1/models/tiny/versions/2/examples").json() == body
    # Each input runs through predict as it is.
    x = [e["input"] for e in body["examples"]]
    assert client.post("/v1/models/tiny:predict", json={"instances": x}).status_code == 200


def link_examples_outside(folder):
    outside = folder.parent.parent.parent / "outside.json"
    outside.write_bytes((folder / "examples.json").read_bytes())
    (folder / "examples.json").unlink()
    (folder / "examples.json").symlink_to(outside)


@pytest.mark.parametrize("attack, words", [
    (fifo_instead_of("examples.json"), "extra file is a FIFO"),
    (link_examples_outside, "link to a file outside the model repository"),
])
def test_hostile_examples_refuse_their_model_at_once_and_the_others_serve(
        repository, attack, words):
    attack(copy_model(repository / "tiny" / "2", repository, "bad"))
    with pytest.raises(ArtifactError, match=words) as refusal:
        within(10, lambda: ModelEngine(repository / "bad" / "1", repository=repository))
    assert str(refusal.value).startswith("bad/1/examples.json")
    with TestClient(create_app(settings(repository))) as client:
        names = [m["name"] for m in client.get("/v1/models").json()["models"]]
        assert names == ["other", "tiny"]


def test_an_artifact_without_examples_answers_an_empty_list(client):
    body = client.get("/v1/models/other/examples").json()
    assert body == {"model_name": "other", "model_version": "1", "split": None,
                    "examples": []}


@pytest.mark.parametrize("path", ["/v1/models/nope/examples", "/v1/models/nope/card",
                                  "/v1/models/tiny/versions/1/examples",
                                  "/v1/models/tiny/versions/1/card"])
def test_a_model_or_version_not_loaded_is_a_404(client, path):
    response = client.get(path)
    assert response.status_code == 404 and "not loaded" in response.json()["error"]


def test_the_card_says_what_the_artifact_records_and_no_server_path(tmp_path):
    root = tmp_path / "repo"
    metadata = {
        "metrics": {"test_density": [0.25, 0.5], "test_error": 0.03},
        "training": {"command": "sparsegate-train --preset blocks-digits --data digits"},
        "data": {"name": "digits", "source": "/home/someone/secret-data",
                 "sizes": {"train": 1318, "valid": 120, "test": 359}},
    }
    save_gated_network(tiny_network(0), root, "carded", 3, metadata,
                       extra_files=recorded_examples(INPUT_SIZE, CLASSES, count=6))
    with TestClient(create_app(settings(root))) as client:
        response = client.get("/v1/models/carded/card")
        listed = client.get("/v1/models").json()["models"][0]["versions"][0]
        assert client.get("/v1/models/carded/versions/3/card").json() == response.json()
    card = response.json()
    model, _ = load_gated_network(root / "carded" / "3")
    assert card["architecture"] == model.config.to_dict()
    assert (card["name"], card["version"], card["backend"]) == ("carded", "3", "torch")
    assert card["estimator"]["name"] == "st"
    assert card["target_density"] == model.config.target_density
    assert card["test_density"] == [0.25, 0.5] and card["test_error"] == 0.03
    assert card["training_command"] == metadata["training"]["command"]
    assert card["data"] == {"name": "digits", "sizes": metadata["data"]["sizes"]}
    assert card["examples"] == 6 and card["dense_macs"] == listed["dense_macs"]
    assert 0 < card["gater_macs"] < card["dense_macs"]
    assert card["expected_saved_fraction"] == listed["expected_saved_fraction"]
    assert "secret-data" not in response.text


def test_a_card_of_an_artifact_without_provenance_says_null(client):
    card = client.get("/v1/models/other/card").json()
    assert card["test_error"] is None and card["training_command"] is None
    assert card["data"] is None and card["examples"] == 0


def test_the_traffic_summary_follows_the_requests(client):
    idle = {m["name"]: m for m in client.get("/v1/metrics/summary").json()["models"]}
    assert set(idle) == {"tiny", "other"}
    assert idle["tiny"]["requests"] == 0 and idle["tiny"]["latency_ms"] is None
    saved = []
    for rows in (1, 2, 3):
        body = client.post("/v1/models/tiny:predict", json={"instances": inputs(rows)}).json()
        saved += [p["compute"]["saved_fraction"] for p in body["predictions"]]
    summary = client.get("/v1/metrics/summary").json()
    assert summary["window_s"] == 60
    tiny = {m["name"]: m for m in summary["models"]}["tiny"]
    assert (tiny["requests"], tiny["examples"]) == (3, 6)
    assert tiny["requests_per_second"] > 0
    latency = tiny["latency_ms"]
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"]
    assert tiny["mean_saved_fraction"] == pytest.approx(np.mean(saved))


def test_recent_traffic_forgets_what_left_the_window_and_stays_bounded():
    now = [100.0]
    traffic = RecentTraffic(window_s=10, max_requests=4, clock=lambda: now[0])
    for _ in range(6):  # one request a second, each 2 ms, half saved
        now[0] += 1
        traffic.record("m", 0.002, 0.5, 1)
    (m,) = traffic.summary([])
    assert m["requests"] == 4  # the oldest two were dropped: at most max_requests kept
    assert m["requests_per_second"] == pytest.approx(4 / 3)  # over the 3 s they span
    assert m["latency_ms"]["p50"] == pytest.approx(2) and m["mean_saved_fraction"] == 0.5
    now[0] += 20
    assert traffic.summary(["m"]) == [{"name": "m", "requests": 0, "examples": 0,
                                       "requests_per_second": 0.0, "latency_ms": None,
                                       "mean_saved_fraction": None}]
    assert traffic.summary([]) == []  # an unloaded model without traffic is forgotten


def test_the_new_routes_are_in_the_openapi_schema(client):
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/v1/models/{name}/card", "/v1/models/{name}/versions/{version}/card",
                 "/v1/models/{name}/examples", "/v1/models/{name}/versions/{version}/examples",
                 "/v1/metrics/summary"):
        assert "4XX" in paths[path]["get"]["responses"], path
    parameters = paths["/v1/models/{name}:predict"]["post"]["parameters"]
    assert any(p["name"] == "gates" and p["in"] == "query" for p in parameters)
