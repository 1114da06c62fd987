"""Inference requests past FastAPI's routing (`service.infer_shortcut`) answer exactly as the
routed app answers them, errors and metrics included, and never reach the router."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRouter
from fastapi.testclient import TestClient
from starlette.exceptions import HTTPException

from service import routes_v1, routes_v2
from service.app import create_app
from service.errors import ApiError
from service.infer_shortcut import InferShortcut, exception_handler

from .conftest import INPUT_SIZE, settings

TIMINGS = ("queue_ms", "compute_ms", "total_ms")


def routed_app(repository, **changes) -> FastAPI:
    """The app without the shortcut: every request through FastAPI's router."""
    app = create_app(settings(repository, **changes))
    app.user_middleware = [m for m in app.user_middleware if m.cls is not InferShortcut]
    return app


def infer_body(rows: int, **extra) -> dict:
    data = np.random.default_rng(rows).normal(size=(rows, INPUT_SIZE)).round(4).tolist()
    return {"inputs": [{"name": "input", "shape": [rows, INPUT_SIZE], "datatype": "FP32",
                        "data": data}], **extra}


def binary_request(rows: int) -> dict:
    x = np.random.default_rng(rows).normal(size=(rows, INPUT_SIZE)).astype("<f4")
    header = json.dumps({"inputs": [{"name": "input", "shape": [rows, INPUT_SIZE],
                                     "datatype": "FP32",
                                     "parameters": {"binary_data_size": x.nbytes}}],
                         "parameters": {"binary_data_output": True}}).encode()
    return {"content": header + x.tobytes(),
            "headers": {"Inference-Header-Content-Length": str(len(header)),
                        "Content-Type": "application/octet-stream"}}


# (method, path, request keywords): answers, refusals by the endpoint, by the guards before
# it and by the router after it.
REQUESTS = [
    ("POST", "/v2/models/tiny/infer", {"json": infer_body(3, id="r1")}),
    ("POST", "/v2/models/tiny/versions/1/infer", {"json": infer_body(2)}),
    ("POST", "/v2/models/tiny/infer", binary_request(2)),
    ("POST", "/v2/models/missing/infer", {"json": infer_body(1)}),
    ("POST", "/v2/models/tiny/versions/9/infer", {"json": infer_body(1)}),
    ("POST", "/v2/models/tiny/infer", {"content": b"{not json"}),
    ("POST", "/v2/models/tiny/infer", {"json": infer_body(1, model_name="other")}),
    ("POST", "/v2/models/tiny/infer", {"content": b"x" * 5000}),
    ("POST", "/v2/models/tiny/infer", {"content": b"a=1", "headers": {
        "Content-Type": "application/x-www-form-urlencoded"}}),
    ("POST", "/v2/models/tiny/infer", {"json": infer_body(1), "headers": {
        "Host": "evil.example"}}),
    ("GET", "/v2/models/tiny/infer", {}),
    ("POST", "/v2/models/tiny/infer/", {"json": infer_body(1)}),
    ("POST", "/v2/models//infer", {"json": infer_body(1)}),
]


def comparable(response) -> tuple:
    """Status, headers that matter and body, the server's timings left out."""
    content = response.content
    if response.status_code == 200:
        length = response.headers.get("inference-header-content-length")
        header = content[:int(length)] if length else content
        body = json.loads(header)
        for key in TIMINGS:
            assert key in body["parameters"]
            del body["parameters"][key]
        content = (body, content[len(header):])
    return (response.status_code, response.headers.get("content-type"),
            response.headers.get("allow"), response.headers.get("retry-after"), content)


def error_counts(client: TestClient) -> list[str]:
    return sorted(line for line in client.get("/metrics").text.splitlines()
                  if line.startswith("sparsegate_errors_total"))


def test_the_shortcut_answers_as_the_router_does(repository):
    with (TestClient(create_app(settings(repository, max_body_bytes=4096))) as short,
          TestClient(routed_app(repository, max_body_bytes=4096)) as routed):
        for method, path, keywords in REQUESTS:
            answers = [comparable(c.request(method, path, follow_redirects=False, **keywords))
                       for c in (short, routed)]
            assert answers[0] == answers[1], (method, path)
        assert error_counts(short) == error_counts(routed)
        assert any('route="/v2/models/{name}/infer",status="404"' in line
                   for line in error_counts(short))


def test_inference_requests_never_reach_the_router(repository, monkeypatch):
    calls = []
    original = APIRouter.__call__

    async def counted(self, scope, receive, send):
        if scope["type"] == "http":
            calls.append(scope["path"])
        await original(self, scope, receive, send)

    monkeypatch.setattr(APIRouter, "__call__", counted)
    with TestClient(create_app(settings(repository))) as client:
        assert client.post("/v2/models/tiny/infer", json=infer_body(1)).status_code == 200
        assert client.post("/v2/models/missing/infer", json=infer_body(1)).status_code == 404
        assert calls == []
        assert client.get("/v2/models/tiny/infer").status_code == 405
        assert client.post("/v1/models/tiny:predict",
                           json={"instances": infer_body(1)["inputs"][0]["data"]}
                           ).status_code == 200
        assert calls == ["/v2/models/tiny/infer", "/v1/models/tiny:predict"]


@pytest.mark.parametrize("shortcut", [True, False])
def test_an_unexpected_error_is_the_same_logged_500(repository, monkeypatch, shortcut):
    def broken(payload, engine):
        raise RuntimeError("a bug")

    monkeypatch.setattr(routes_v2, "_check_named_model", broken)
    app = create_app(settings(repository)) if shortcut else routed_app(repository)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post("/v2/models/tiny/infer", json=infer_body(1))
        assert response.status_code == 500
        assert response.json() == {"error": "internal error: RuntimeError"}
        assert any('route="/v2/models/{name}/infer",status="500"' in line
                   for line in error_counts(client))


def test_only_endpoints_of_path_and_request_are_taken():
    predict = next(r for r in routes_v1.router.routes if r.path.endswith(":predict"))
    with pytest.raises(ValueError, match="only FastAPI's request handler validates"):
        InferShortcut(None, [predict])  # it reads a query parameter, `gates`
    assert len(InferShortcut(None, routes_v2.SHORTCUT_ROUTES).routes) == 2


def test_errors_find_the_handler_the_exception_middleware_would():
    def by_class(request, error):
        return "class"

    def by_status(request, error):
        return "status"

    handlers = {ApiError: by_class, HTTPException: by_class, 404: by_status,
                Exception: by_class, 500: by_status}
    assert exception_handler(handlers, ApiError(400, "x")) is by_class
    assert exception_handler(handlers, HTTPException(404)) is by_status
    assert exception_handler(handlers, HTTPException(405)) is by_class

    class Custom(ApiError):
        pass

    assert exception_handler(handlers, Custom(400, "x")) is by_class
    assert exception_handler(handlers, RuntimeError("x")) is None
