"""Model control: load, unload and the repository index are off unless the server runs with
`--model-control explicit`, and then keyed unless opened on purpose; an empty API key is refused
at start-up; a non-ASCII key works over a real socket when sent UTF-8 encoded."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from service.app import create_app
from service.config import Settings

from .conftest import ADMIN_HEADERS, INPUT_SIZE, Server, admin_settings, settings

ADMIN_POSTS = ["/v2/repository/index", "/v2/repository/models/tiny/load",
               "/v2/repository/models/tiny/unload"]
BODY = {"instances": [[0.25] * INPUT_SIZE]}


def served_version(url_or_client) -> int | str:
    response = url_or_client.post("/v1/models/tiny:predict", json=BODY)
    return response.json()["model_version"] if response.status_code == 200 else \
        response.status_code


@pytest.mark.parametrize("path", ADMIN_POSTS)
def test_model_control_is_off_by_default_and_says_how_to_enable_it(client, path):
    # Even the right key does not open routes that are off.
    response = client.post(path, headers=ADMIN_HEADERS)
    assert response.status_code == 403, response.text
    message = response.json()["error"]
    assert "--model-control explicit" in message and "SPARSEGATE_API_KEY" in message
    assert served_version(client) == "2"  # the unload did not run


def test_a_real_default_server_refuses_model_control(server):
    tritonclient_http = pytest.importorskip("tritonclient.http")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for path in ADMIN_POSTS:
            response = client.post(path)
            assert response.status_code == 403 and "model control is off" in response.text
        assert served_version(client) == "2"
    triton = tritonclient_http.InferenceServerClient(server.url.removeprefix("http://"))
    with pytest.raises(Exception, match="model control is off"):
        triton.unload_model("tiny")
    assert triton.is_model_ready("tiny")
    triton.close()


def test_explicit_model_control_needs_a_key_or_an_explicit_opening(repository):
    with pytest.raises(ValidationError, match="needs an API key"):
        settings(repository, model_control="explicit")
    with pytest.raises(ValidationError, match="contradict"):
        settings(repository, model_control="explicit", api_key="k", admin_open=True)
    opened = settings(repository, model_control="explicit", admin_open=True)
    with TestClient(create_app(opened)) as client:
        assert client.post("/v2/repository/models/tiny/unload").status_code == 200
        assert client.post("/v2/repository/index").status_code == 200


def test_explicit_model_control_with_the_key(admin_client):
    assert admin_client.post("/v2/repository/models/tiny/unload").json()["unloaded"] == ["2"]
    assert admin_client.post("/v2/repository/models/tiny/load").json()["version"] == "2"


@pytest.mark.parametrize("key", ["", " ", "\t\n", "  key", "key ", "ke\ny", "k\x00ey"])
def test_an_empty_or_unsendable_key_is_refused_by_the_settings(repository, key):
    with pytest.raises(ValidationError, match="api_key"):
        admin_settings(repository, api_key=key)
    with pytest.raises(ValidationError, match="api_key"):
        settings(repository, api_key=key)  # with model control off too: it is a mistake


def test_an_empty_key_in_the_environment_is_refused(monkeypatch, tmp_path):
    # What docker-compose passes for `SPARSEGATE_API_KEY: ${SPARSEGATE_API_KEY:-}` when unset.
    monkeypatch.setenv("SPARSEGATE_API_KEY", "")
    with pytest.raises(ValidationError, match="API key is empty"):
        Settings(model_repository=tmp_path)


def clean_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SPARSEGATE_")}


@pytest.mark.parametrize("env, args, words", [
    ({"SPARSEGATE_API_KEY": ""}, [], "API key is empty"),
    ({"SPARSEGATE_API_KEY": "   "}, ["--model-control", "explicit"], "API key is empty"),
    ({}, ["--model-control", "explicit"], "needs an API key"),
    ({"SPARSEGATE_MODEL_CONTROL": "explicit"}, [], "needs an API key"),
], ids=["empty", "spaces", "explicit-without-key", "explicit-from-env"])
def test_the_server_refuses_to_start_with_an_unusable_key(tmp_path, env, args, words):
    run = subprocess.run([sys.executable, "-m", "service.cli", "--model-repository",
                          str(tmp_path), *args], capture_output=True, text=True, timeout=120,
                         env={**clean_environment(), **env})
    assert run.returncode == 2, run.stderr
    assert words in run.stderr and "Traceback" not in run.stderr


NON_ASCII_KEY = "schl\u00fcssel-\u5bc6\u94a5"


def raw_post(url: str, path: str, headers: list[bytes]) -> int:
    """A body-less POST with exactly these header lines; the status code."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: " + host.encode()
                           + b"\r\nContent-Length: 0\r\nConnection: close\r\n"
                           + b"".join(h + b"\r\n" for h in headers) + b"\r\n")
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1])


def test_a_real_server_with_model_control(repository):
    server = Server(repository, "--model-control", "explicit",
                    env={"SPARSEGATE_API_KEY": NON_ASCII_KEY})
    try:
        index = "/v2/repository/index"
        utf8 = NON_ASCII_KEY.encode("utf-8")
        assert raw_post(server.url, index, []) == 401
        assert raw_post(server.url, index, [b"X-API-Key:"]) == 401
        assert raw_post(server.url, index, [b"X-API-Key:   "]) == 401
        assert raw_post(server.url, index, [b"Authorization: Bearer "]) == 401
        assert raw_post(server.url, index, [b"Authorization: Bearer"]) == 401
        assert raw_post(server.url, index, [b"X-API-Key: " + utf8[:-1]]) == 403
        assert raw_post(server.url, index, [b"X-API-Key: " + utf8]) == 200
        assert raw_post(server.url, index, [b"Authorization: Bearer " + utf8]) == 200
        with httpx.Client(base_url=server.url, timeout=30,
                          headers={"X-API-Key": utf8}) as client:
            assert client.post("/v2/repository/models/tiny/unload").status_code == 200
            assert served_version(client) == 404
            assert client.post("/v2/repository/models/tiny/load").status_code == 200
            assert served_version(client) == "2"
    finally:
        output = server.stop()
    assert NON_ASCII_KEY not in output and "Traceback" not in output


def test_unloading_many_distinct_names_leaves_no_lock_behind(admin_client):
    repository = admin_client.app.state.repository
    for i in range(300):
        name = f"n{i}-" + "x" * 120
        assert admin_client.post(f"/v2/repository/models/{name}/unload").status_code == 404
        assert admin_client.post(f"/v2/repository/models/{name}/load").status_code == 404
    assert admin_client.post("/v2/repository/models/tiny/load").status_code == 200
    assert len(repository._locks) == 0


def test_the_schema_declares_the_key_on_model_management_only(client):
    schema = client.get("/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["apiKey"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            keyed = "security" in operation
            assert keyed == path.startswith("/v2/repository/"), path
