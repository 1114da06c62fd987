"""Requests a page on another site makes a browser send (a body-less `fetch`, `sendBeacon`, an
`ArrayBuffer`: no preflight, no Content-Type) are refused with 403 before anything runs, for
inference and model control alike, unless CORS allows the page's origin; clients that are not
browsers (no Origin, no Sec-Fetch-Site) are served as before."""

from __future__ import annotations

import json
import socket

import httpx
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.origin_guard import ROUTE_LABEL, same_origin

from .conftest import ADMIN_HEADERS, INPUT_SIZE, admin_settings

V1_BODY = json.dumps({"instances": [[0.25] * INPUT_SIZE]})
V2_BODY = json.dumps({"inputs": [{"name": "input", "shape": [1, INPUT_SIZE], "datatype": "FP32",
                                  "data": [0.25] * INPUT_SIZE}]})
POSTS = [("/v1/models/tiny:predict", V1_BODY), ("/v2/models/tiny/versions/2/infer", V2_BODY),
         ("/v2/repository/index", ""), ("/v2/repository/models/tiny/load", ""),
         ("/v2/repository/models/tiny/unload", "")]
PAGE = "https://attacker.example"
# What browsers send for a page on another site (or another port of this host, which is the
# same site) that posts here; the API key rides along only to show it does not open the door.
CROSS_SITE = {
    "fetch-cross-site": {"Origin": PAGE, "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors"},
    "beacon-cross-site": {"Origin": PAGE, "Sec-Fetch-Site": "cross-site",
                          "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "empty"},
    "same-site-other-port": {"Origin": "http://localhost:3000", "Sec-Fetch-Site": "same-site"},
    "sandboxed-frame": {"Origin": "null", "Sec-Fetch-Site": "cross-site"},
    "old-browser-origin-only": {"Origin": PAGE},
    "old-browser-null-origin": {"Origin": "null"},
    "fetch-metadata-only": {"Sec-Fetch-Site": "cross-site"},
    "unknown-site-value": {"Origin": PAGE, "Sec-Fetch-Site": "somewhere"},
}
ALLOWED = {
    "curl-or-tritonclient": {},
    "same-origin-page": {"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"},
    "same-origin-old-browser": {"Origin": "http://testserver"},
    "same-origin-default-port": {"Origin": "http://testserver", "Host": "testserver:80"},
    "typed-by-the-user": {"Sec-Fetch-Site": "none"},
}


def examples_served(client) -> str:
    return "\n".join(line for line in client.app.state.metrics.render().decode().splitlines()
                     if line.startswith("sparsegate_examples_total"))


@pytest.mark.parametrize("path, body", POSTS, ids=[p for p, _ in POSTS])
@pytest.mark.parametrize("kind", CROSS_SITE)
def test_cross_site_browser_requests_are_refused_before_anything_runs(admin_client, path, body,
                                                                      kind):
    before = examples_served(admin_client)
    response = admin_client.post(path, content=body, headers=CROSS_SITE[kind])
    assert response.status_code == 403, response.text
    assert "--cors-origins" in response.json()["error"]
    assert examples_served(admin_client) == before  # no inference ran
    # Nothing was unloaded: the model still answers, from the same version.
    ok = admin_client.post("/v1/models/tiny:predict", content=V1_BODY)
    assert ok.status_code == 200 and ok.json()["model_version"] == "2"
    metrics = admin_client.app.state.metrics.render().decode()
    assert f'route="{ROUTE_LABEL}",status="403"' in metrics


@pytest.mark.parametrize("kind", ALLOWED)
def test_non_browser_and_same_origin_requests_are_served(admin_client, kind):
    for path, body in POSTS[:3]:
        response = admin_client.post(path, content=body, headers=ALLOWED[kind])
        assert response.status_code == 200, (path, response.text)


def test_an_origin_cors_allows_may_post_and_read_the_answer(repository):
    allowed = "https://dashboard.example"
    app = create_app(admin_settings(repository, cors_origins=[allowed]))
    with TestClient(app, headers=ADMIN_HEADERS) as client:
        for path, body in POSTS[:3]:
            response = client.post(path, content=body, headers={
                "Origin": allowed, "Sec-Fetch-Site": "cross-site"})
            assert response.status_code == 200, (path, response.text)
            assert response.headers["access-control-allow-origin"] == allowed
        # Another origin is still refused, and so is a look-alike.
        for origin in (PAGE, allowed + ".attacker.example", allowed.upper()):
            response = client.post(POSTS[0][0], content=V1_BODY,
                                   headers={"Origin": origin, "Sec-Fetch-Site": "cross-site"})
            assert response.status_code == 403, origin


def test_cors_star_lets_every_origin(repository):
    with TestClient(create_app(admin_settings(repository, cors_origins=["*"]))) as client:
        response = client.post(POSTS[0][0], content=V1_BODY,
                               headers={"Origin": PAGE, "Sec-Fetch-Site": "cross-site"})
        assert response.status_code == 200


def test_reads_from_other_sites_are_not_refused(client):
    # A link from another site to the docs, or a page's GET whose answer CORS hides anyway.
    headers = CROSS_SITE["fetch-cross-site"]
    assert client.get("/docs", headers=headers).status_code == 200
    assert client.get("/v2/models/tiny", headers=headers).status_code == 200
    assert client.head("/v2/health/ready", headers=headers).status_code in (200, 405)


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "QUERY"])
def test_every_method_but_get_head_and_options_is_guarded(client, method):
    response = client.request(method, "/v2/repository/models/tiny/unload",
                              headers=CROSS_SITE["fetch-cross-site"])
    assert response.status_code == 403


def test_same_origin_compares_scheme_host_and_port():
    assert same_origin("http://127.0.0.1:8000", "127.0.0.1:8000")
    assert same_origin("http://LocalHost:8000", "localhost:8000")
    assert same_origin("https://api.example", "api.example:443")
    assert same_origin("http://api.example:80", "api.example")
    assert not same_origin("https://api.example", "api.example:80")
    assert not same_origin("http://127.0.0.1:8001", "127.0.0.1:8000")
    assert not same_origin("http://127.0.0.1", "127.0.0.1:8000")
    assert not same_origin("null", "null")
    assert not same_origin("file://", "")
    assert not same_origin("http://a.example", None)


def test_a_real_server_refuses_a_cross_site_body_less_post(admin_server):
    """What `navigator.sendBeacon(url)` or `fetch(url, {method: "POST", mode: "no-cors"})` from
    another site sends, byte for byte (no Content-Type, no body), even with the key: refused.
    The same request without the browser's headers is served."""
    host, port = admin_server.url.removeprefix("http://").split(":")

    def post(extra: bytes) -> int:
        with socket.create_connection((host, int(port)), timeout=30) as connection:
            connection.sendall(b"POST /v2/repository/models/other/unload HTTP/1.1\r\n"
                               b"Host: " + f"{host}:{port}".encode() + b"\r\n"
                               b"X-API-Key: " + ADMIN_HEADERS["X-API-Key"].encode() + b"\r\n"
                               b"Content-Length: 0\r\nConnection: close\r\n" + extra + b"\r\n")
            answer = b""
            while chunk := connection.recv(65536):
                answer += chunk
        return int(answer.split(b" ", 2)[1])

    assert post(b"Origin: https://attacker.example\r\nSec-Fetch-Site: cross-site\r\n"
                b"Sec-Fetch-Mode: no-cors\r\n") == 403
    assert post(b"Origin: http://localhost:3000\r\nSec-Fetch-Site: same-site\r\n") == 403
    ready = httpx.get(f"{admin_server.url}/v2/models/other/ready", timeout=30)
    assert ready.status_code == 200  # still loaded
    assert post(b"") == 200
    assert httpx.get(f"{admin_server.url}/v2/models/other/ready", timeout=30).status_code != 200
