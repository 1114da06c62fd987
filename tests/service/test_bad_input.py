"""Every bad request gets a 4xx with a JSON error that says what is wrong; never a 500."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from service.app import create_app

from .conftest import INPUT_SIZE, settings

ROW = [0.5] * INPUT_SIZE


def v2(data, shape=(1, INPUT_SIZE), datatype="FP32", name="input", **extra) -> dict:
    return {"inputs": [{"name": name, "shape": list(shape), "datatype": datatype,
                        "data": data}], **extra}


# (path, raw JSON text or object, status, words the error must contain)
CASES = [
    ("/v1/models/tiny:predict", {"instances": [[0.5] * (INPUT_SIZE - 1)]}, 400, "shape"),
    ("/v1/models/tiny:predict", {"instances": []}, 400, "instances"),
    ("/v1/models/tiny:predict", {"instances": [ROW, ROW[:3]]}, 400, "different lengths"),
    ("/v1/models/tiny:predict", {"instances": [["a"] * INPUT_SIZE]}, 400, "numbers only"),
    ("/v1/models/tiny:predict", {"instances": [[True] * INPUT_SIZE]}, 400, "numbers only"),
    ("/v1/models/tiny:predict", {"instances": [[*ROW[1:], True]]}, 400, "numbers only"),
    ("/v1/models/tiny:predict", {"instances": [[None] * INPUT_SIZE]}, 400, "numbers only"),
    ("/v1/models/tiny:predict", {"instances": [[1e39] * INPUT_SIZE]}, 400, "not finite"),
    ("/v1/models/tiny:predict", '{"instances": [[NaN' + ', 1' * (INPUT_SIZE - 1) + ']]}', 400,
     "NaN"),
    ("/v1/models/tiny:predict", '{"instances": [[Infinity' + ', 1' * (INPUT_SIZE - 1) + ']]}',
     400, "Infinity"),
    ("/v1/models/tiny:predict", '{"instances": [[-Infinity' + ', 1' * (INPUT_SIZE - 1) + ']]}',
     400, "Infinity is not a number JSON allows"),
    ("/v1/models/tiny:predict", '{"instances": [[1e400' + ', 1' * (INPUT_SIZE - 1) + ']]}',
     400, "infinity"),
    ("/v1/models/tiny:predict", b'{"instances": [[\xff]]}', 400, "not UTF-8"),
    ("/v1/models/tiny:predict", '{"instances": [[1, 2,', 400, "not valid JSON"),
    ("/v1/models/tiny:predict", "", 400, "empty"),
    ("/v1/models/tiny:predict", [ROW], 400, "invalid request body"),
    ("/v1/models/tiny:predict", {"instances": [ROW], "extra": 1}, 400, "extra"),
    ("/v1/models/tiny:predict", {"rows": [ROW]}, 400, "instances"),
    ("/v1/models/tiny:predict", {"instances": [ROW] * 9}, 413, "limit"),
    ("/v1/models/nope:predict", {"instances": [ROW]}, 404, "nope"),
    ("/v1/models/tiny/versions/7:predict", {"instances": [ROW]}, 404, "version '7'"),
    ("/v1/models/tiny/versions/x:predict", {"instances": [ROW]}, 404, "version 'x'"),
    ("/v2/models/tiny/infer", v2(ROW, datatype="FP64"), 400, "FP32"),
    ("/v2/models/tiny/infer", v2(ROW, shape=(1, INPUT_SIZE + 1)), 400, "shape"),
    ("/v2/models/tiny/infer", v2(ROW, shape=(0, INPUT_SIZE)), 400, "batch >= 1"),
    ("/v2/models/tiny/infer", v2(ROW, shape=(2, INPUT_SIZE)), 400, "needs"),
    ("/v2/models/tiny/infer", v2(ROW, name="x"), 400, "unknown input"),
    ("/v2/models/tiny/infer", v2(None), 400, "no data"),
    ("/v2/models/tiny/infer", v2([0.5] * (INPUT_SIZE - 1) + [False]), 400, "numbers only"),
    ("/v2/models/tiny/infer", v2([[0.5] * 4] * 3), 400, "does not match"),
    ("/v2/models/tiny/infer", v2(ROW, outputs=[{"name": "nope"}]), 400, "unknown output"),
    ("/v2/models/tiny/infer", {"inputs": []}, 400, "inputs"),
    ("/v2/models/tiny/infer", {"inputs": [v2(ROW)["inputs"][0]] * 2}, 400, "exactly one"),
    ("/v2/models/tiny/infer", v2(ROW, shape=(9, INPUT_SIZE)), 413, "limit"),
    ("/v2/models/nope/infer", v2(ROW), 404, "nope"),
    ("/v2/models/tiny/versions/9/infer", v2(ROW), 404, "version"),
    ("/v2/models/tiny/infer", v2(ROW, parameters={"a": [1]}), 400, "parameters"),
]


@pytest.fixture(scope="module")
def strict_client(tmp_path_factory):
    from .conftest import write_repository

    repository = write_repository(tmp_path_factory.mktemp("repo"))
    with TestClient(create_app(settings(repository, max_instances=8,
                                        max_body_bytes=4096))) as test_client:
        yield test_client


@pytest.mark.parametrize(("path", "body", "status", "words"), CASES)
def test_bad_request_is_a_4xx_that_says_why(strict_client, path, body, status, words):
    content = body if isinstance(body, str | bytes) else json.dumps(body)
    response = strict_client.post(path, content=content,
                                  headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert words.lower() in error.lower(), error


def test_a_body_over_the_limit_is_refused_before_parsing(strict_client):
    response = strict_client.post("/v1/models/tiny:predict", content=b"[" * 5000,
                                  headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and "limit" in response.json()["error"]


def test_deep_nesting_is_a_400(strict_client):
    response = strict_client.post("/v1/models/tiny:predict",
                                  content='{"instances": ' + "[" * 3000 + "]" * 3000 + "}")
    assert response.status_code in (400, 413)
    assert "error" in response.json()


@pytest.mark.parametrize(("header", "size", "words"), [
    ("999999", INPUT_SIZE * 4, "Inference-Header-Content-Length"),
    (None, INPUT_SIZE * 4, "no Inference-Header-Content-Length"),
    ("len", INPUT_SIZE * 4 - 4, "binary_data_size must be"),
    ("len", INPUT_SIZE * 4, "binary bytes"),  # fewer bytes sent than declared
])
def test_bad_binary_tensors(strict_client, header, size, words):
    head = json.dumps({"inputs": [{"name": "input", "shape": [1, INPUT_SIZE],
                                   "datatype": "FP32",
                                   "parameters": {"binary_data_size": size}}]}).encode()
    headers = {} if header is None else {
        "Inference-Header-Content-Length": str(len(head)) if header == "len" else header}
    tail = b"" if header is None else b"\0" * 8
    response = strict_client.post("/v2/models/tiny/infer", content=head + tail,
                                  headers=headers)
    assert response.status_code == 400, response.text
    assert words in response.json()["error"]


def test_binary_nan_is_refused(strict_client):
    import numpy as np

    x = np.full((1, INPUT_SIZE), np.nan, dtype="<f4")
    head = json.dumps({"inputs": [{"name": "input", "shape": [1, INPUT_SIZE],
                                   "datatype": "FP32",
                                   "parameters": {"binary_data_size": x.nbytes}}]}).encode()
    response = strict_client.post("/v2/models/tiny/infer", content=head + x.tobytes(),
                                  headers={"Inference-Header-Content-Length": str(len(head))})
    assert response.status_code == 400 and "not finite" in response.json()["error"]


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/v2/models/tiny/infer", 405),
    ("GET", "/nowhere", 404),
    ("DELETE", "/v1/models", 405),
    ("GET", "/v2/models/nope", 404),
    ("GET", "/v2/models/nope/ready", 404),
])
def test_wrong_routes_and_methods_are_json_errors(strict_client, method, path, status):
    response = strict_client.request(method, path)
    assert response.status_code == status and "error" in response.json()
