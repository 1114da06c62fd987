"""Requests a web page on any origin can send without a CORS preflight (form and text/plain
bodies) are refused with 415 before anything runs; every other body type is served as before."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.form_guard import ROUTE_LABEL, media_type

from .conftest import INPUT_SIZE, settings

V1_BODY = json.dumps({"instances": [[0.25] * INPUT_SIZE]})
V2_BODY = json.dumps({"inputs": [{"name": "input", "shape": [1, INPUT_SIZE], "datatype": "FP32",
                                  "data": [0.25] * INPUT_SIZE}]})
POSTS = [("/v1/models/tiny:predict", V1_BODY), ("/v1/models/tiny/versions/2:predict", V1_BODY),
         ("/v2/models/tiny/infer", V2_BODY), ("/v2/models/tiny/versions/2/infer", V2_BODY),
         ("/v2/repository/index", ""), ("/v2/repository/models/tiny/load", ""),
         ("/v2/repository/models/tiny/unload", "")]
FORM_TYPES = ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
              "text/plain", "text/plain;charset=UTF-8", " Text/Plain ",
              "APPLICATION/X-WWW-FORM-URLENCODED"]


@pytest.mark.parametrize("content_type", FORM_TYPES)
@pytest.mark.parametrize("path, body", POSTS, ids=[p for p, _ in POSTS])
def test_form_and_text_bodies_are_refused_before_anything_runs(client, path, body,
                                                               content_type):
    served = client.app.state.metrics.render()
    response = client.post(path, content=body, headers={"Content-Type": content_type})
    assert response.status_code == 415, response.text
    assert set(response.json()) == {"error"} and "application/json" in response.json()["error"]
    # Nothing ran: no inference counted and the model still loaded (unload was refused too).
    assert _requests(client) == _requests_in(served)
    ok = client.post("/v1/models/tiny:predict", content=V1_BODY,
                     headers={"Content-Type": "application/json"})
    assert ok.status_code == 200 and ok.json()["model_version"] == "2"
    assert f'route="{ROUTE_LABEL}",status="415"' in client.app.state.metrics.render().decode()


@pytest.mark.parametrize("headers", [{}, {"Content-Type": "application/json"},
                                     {"Content-Type": "application/json; charset=utf-8"},
                                     {"Content-Type": "application/octet-stream"},
                                     {"Content-Type": "application/vnd.api+json"}],
                         ids=["none", "json", "json-charset", "octet-stream", "vendor-json"])
def test_every_other_body_type_is_served(client, headers):
    for path, body in POSTS[:4]:
        response = client.post(path, content=body, headers=headers)
        assert response.status_code == 200, (path, response.text)


def test_gets_and_preflights_are_not_guarded(repository):
    preflight = {"Origin": "https://example.com", "Access-Control-Request-Method": "POST",
                 "Content-Type": "text/plain"}
    with TestClient(create_app(settings(repository, cors_origins=["https://example.com"]))) as c:
        assert c.get("/v2/models/tiny", headers={"Content-Type": "text/plain"}).status_code == 200
        assert c.options("/v1/models/tiny:predict", headers=preflight).status_code == 200
        refused = c.post("/v1/models/tiny:predict", content=V1_BODY,
                         headers={"Origin": "https://example.com", "Content-Type": "text/plain"})
        assert refused.status_code == 415
        # The browser may read the refusal: it carries the CORS header of an allowed origin.
        assert refused.headers["access-control-allow-origin"] == "https://example.com"


def test_media_type_reads_the_header_without_parameters_or_case():
    assert media_type([(b"Content-Type", b" Text/Plain ; charset=x")]) == "text/plain"
    assert media_type([(b"accept", b"text/plain")]) is None
    assert media_type([(b"content-type", b"\xe9/\xb2")]) == "\xe9/\xb2"


def _requests(client) -> str:
    return _requests_in(client.app.state.metrics.render())


def _requests_in(metrics: bytes) -> str:
    """The examples-inferred lines of the Prometheus text."""
    return "\n".join(line for line in metrics.decode().splitlines()
                     if line.startswith("sparsegate_examples_total"))
