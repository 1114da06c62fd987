"""Load, unload and reload; refused artifacts leave the loaded version serving; the API key."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from models.gated_artifact import save_gated_network
from service.app import create_app

from .conftest import INPUT_SIZE, admin_settings, settings, tiny_network

BODY = {"instances": [[0.25] * INPUT_SIZE]}


def predict_version(client, name="tiny") -> str:
    response = client.post(f"/v1/models/{name}:predict", json=BODY)
    assert response.status_code == 200, response.text
    return response.json()["model_version"]


def test_load_unload_and_reload(admin_client, repository):
    client = admin_client
    assert client.post("/v2/repository/models/tiny/load",
                       json={"parameters": {"version": 1}}).json()["version"] == "1"
    index = {(e["name"], e["version"]): e["state"]
             for e in client.post("/v2/repository/index").json()}
    assert index == {("tiny", "1"): "READY", ("tiny", "2"): "READY", ("other", "1"): "READY"}
    assert predict_version(client) == "2"  # unversioned requests go to the newest loaded
    assert client.post("/v2/repository/models/tiny/unload",
                       json={"parameters": {"version": "2"}}).json()["unloaded"] == ["2"]
    assert predict_version(client) == "1"
    # A new version published while serving: a load without a version picks it up.
    save_gated_network(tiny_network(5), repository, "tiny", 3)
    assert client.post("/v2/repository/models/tiny/load").json()["version"] == "3"
    assert predict_version(client) == "3"
    assert client.post("/v2/repository/models/tiny/load").status_code == 200  # reload
    assert client.post("/v2/repository/models/tiny/unload").json()["unloaded"] == ["1", "3"]
    assert client.post("/v1/models/tiny:predict", json=BODY).status_code == 404
    assert client.post("/v2/repository/models/tiny/unload").status_code == 404


def corrupt_weights(folder):
    path = folder / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate_weights(folder):
    path = folder / "model.safetensors"
    path.write_bytes(path.read_bytes()[:100])


def bad_config_json(folder):
    (folder / "config.json").write_text("{not json")


def wrong_architecture(folder):
    config = json.loads((folder / "config.json").read_text())
    config["architecture"]["layers"][0]["blocks"] = 5
    (folder / "config.json").write_text(json.dumps(config))


def newer_format(folder):
    config = json.loads((folder / "config.json").read_text())
    config["format_version"] = 99
    (folder / "config.json").write_text(json.dumps(config))


def wrong_name(folder):
    config = json.loads((folder / "config.json").read_text())
    config["name"] = "someone-else"
    (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(("breakage", "words"), [
    (corrupt_weights, "sha256"), (truncate_weights, "sha256"), (bad_config_json, "JSON"),
    (wrong_architecture, "weights do not fit"), (newer_format, "newer"),
    (wrong_name, "someone-else"),
])
def test_a_broken_artifact_is_refused_and_the_loaded_version_keeps_serving(
        admin_client, repository, breakage, words):
    client = admin_client
    save_gated_network(tiny_network(7), repository, "tiny", 3)
    breakage(repository / "tiny" / "3")
    response = client.post("/v2/repository/models/tiny/load")
    assert response.status_code == 400, response.text
    assert words in response.json()["error"]
    assert predict_version(client) == "2"


def test_a_broken_artifact_at_start_up_is_left_out(repository):
    corrupt_weights(repository / "other" / "1")
    with TestClient(create_app(settings(repository))) as client:
        assert client.get("/v2/health/ready").status_code == 200  # tiny serves
        assert client.post("/v1/models/other:predict", json=BODY).status_code == 404
        assert predict_version(client) == "2"


def test_no_model_means_not_ready(tmp_path):
    (tmp_path / "empty").mkdir()
    with TestClient(create_app(settings(tmp_path / "empty"))) as client:
        assert client.get("/v2/health/live").status_code == 200
        assert client.get("/v2/health/ready").status_code == 400  # the protocol: 4xx


@pytest.mark.parametrize("name", ["%2e%2e", "a b", ".hidden", "-x", "x" * 129, "caf%C3%A9"])
@pytest.mark.parametrize("action", ["load", "unload"])
def test_invalid_names_are_a_400(admin_client, name, action):
    response = admin_client.post(f"/v2/repository/models/{name}/{action}")
    assert response.status_code == 400, response.text
    assert "invalid model name" in response.json()["error"]


@pytest.mark.parametrize("name", ["..", "../etc"])
def test_dot_segments_never_reach_a_route_with_the_name(admin_client, name):
    # The client resolves them away, so the path names another (missing) route.
    response = admin_client.post(f"/v2/repository/models/{name}/load")
    assert response.status_code in (404, 405), response.text


@pytest.mark.parametrize("version", ["../../x", "-1", "1e3", "0", " 1", "1 ", "10" * 10])
@pytest.mark.parametrize("action", ["load", "unload"])
def test_versions_cannot_leave_the_repository(admin_client, version, action):
    response = admin_client.post(f"/v2/repository/models/tiny/{action}",
                                 json={"parameters": {"version": version}})
    assert response.status_code == 400, response.text
    assert "model version" in response.json()["error"]


@pytest.mark.parametrize("version", ["0001", "02", "+2", "\u0662"])
def test_a_version_not_written_as_its_folder_is_refused_before_any_work(
        admin_client, monkeypatch, version):
    built = []
    monkeypatch.setattr(admin_client.app.state.repository, "_build", built.append)
    response = admin_client.post("/v2/repository/models/tiny/load",
                                 json={"parameters": {"version": version}})
    assert response.status_code == 400, response.text
    assert "model version" in response.json()["error"] and built == []
    response = admin_client.post("/v2/repository/models/tiny/unload",
                                 json={"parameters": {"version": version}})
    assert response.status_code == 400, response.text
    assert predict_version(admin_client) == "2"  # nothing was unloaded


def test_admin_endpoints_need_the_api_key(repository):
    with TestClient(create_app(admin_settings(repository, api_key="s3cret"))) as client:
        path = "/v2/repository/models/tiny/load"
        assert client.post(path).status_code == 401
        assert client.post(path, headers={"X-API-Key": "wrong"}).status_code == 403
        assert client.post(path, headers={"Authorization": "Bearer wrong"}).status_code == 403
        assert client.post(path, headers={"X-API-Key": "s3cret"}).status_code == 200
        assert client.post(path, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert client.post("/v2/repository/models/tiny/unload").status_code == 401
        assert client.post("/v2/repository/index").status_code == 401
        # Inference and reads stay open.
        assert predict_version(client) == "2"


def test_cors_is_off_unless_configured(repository):
    preflight = {"Origin": "https://example.com", "Access-Control-Request-Method": "POST"}
    with TestClient(create_app(settings(repository))) as client:
        response = client.options("/v1/models/tiny:predict", headers=preflight)
        assert "access-control-allow-origin" not in response.headers
    with TestClient(create_app(settings(repository, cors_origins=["https://example.com"]))) as c:
        response = c.options("/v1/models/tiny:predict", headers=preflight)
        assert response.headers["access-control-allow-origin"] == "https://example.com"
