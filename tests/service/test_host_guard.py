"""DNS rebinding: a page whose name was re-resolved to this server's address reads answers as if
same-origin, but its requests still carry its own name in `Host`. Only IP addresses, localhost
and the names in --allowed-hosts are served; anything else gets 400 before routing."""

from __future__ import annotations

import socket

import httpx
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.host_guard import ROUTE_LABEL, host_allowed, host_name

from .conftest import Server, settings

SERVED = ["127.0.0.1:8000", "127.0.0.1", "10.1.2.3:80", "[::1]:8000", "[::1]", "::1",
          "localhost:8000", "LOCALHOST", "0.0.0.0:8000", "[fe80::1%25eth0]:8000"]
REFUSED = ["rebind.attacker.example:8000", "attacker.example", "localhost.attacker.example",
           "127.0.0.1.attacker.example", "localhost.", "127.1", "0x7f.0.0.1", "[::1]x",
           "testserver.evil", "", "\u00e9xample"]


@pytest.mark.parametrize("host", SERVED)
def test_addresses_and_localhost_are_always_served(host):
    assert host_allowed(host, frozenset())


@pytest.mark.parametrize("host", REFUSED)
def test_names_are_refused_unless_listed(host):
    assert not host_allowed(host, frozenset())


def test_listed_names_and_patterns():
    patterns = frozenset({"api", "*.svc.example"})
    assert host_allowed("api:8000", patterns) and host_allowed("API", patterns)
    assert host_allowed("a.svc.example", patterns) and host_allowed("a.b.svc.example:1", patterns)
    assert not host_allowed("svc.example", patterns)
    assert not host_allowed("evilsvc.example", patterns)
    assert not host_allowed("api.attacker.example", patterns)
    assert host_allowed("anything.example", frozenset({"*"}))


def test_host_name_strips_the_port_and_brackets():
    assert host_name("Example.COM:8080") == "example.com"
    assert host_name("[2001:db8::1]:443") == "2001:db8::1"
    assert host_name("[::1]:x") == "[::1]:x"  # not a port: kept whole, so it matches nothing


@pytest.mark.parametrize("path", ["/v2/health/ready", "/v2/models/tiny", "/metrics", "/docs"])
def test_a_rebound_name_is_refused_on_every_route(repository, path):
    with TestClient(create_app(settings(repository))) as client:
        response = client.get(path, headers={"Host": "rebind.attacker.example:8000"})
        assert response.status_code == 400, response.text
        assert "--allowed-hosts" in response.json()["error"]
        assert client.get(path, headers={"Host": "127.0.0.1:8000"}).status_code == 200
        metrics = client.app.state.metrics.render().decode()
        assert f'route="{ROUTE_LABEL}",status="400"' in metrics


def test_a_real_server_answers_only_to_its_addresses_and_listed_names(repository):
    server = Server(repository, "--allowed-hosts", "api.internal", "*.svc.example")
    port = server.url.rsplit(":", 1)[1]
    try:
        def status(host: str) -> int:
            response = httpx.get(f"{server.url}/v2/models/tiny", timeout=30,
                                 headers={"Host": host})
            return response.status_code

        assert status(f"127.0.0.1:{port}") == 200
        assert status(f"localhost:{port}") == 200
        assert status(f"api.internal:{port}") == 200
        assert status(f"tiny.svc.example:{port}") == 200
        assert status(f"rebind.attacker.example:{port}") == 400
        infer = httpx.post(f"{server.url}/v1/models/tiny:predict", timeout=30,
                           headers={"Host": "rebind.attacker.example"},
                           json={"instances": [[0.0] * 12]})
        assert infer.status_code == 400
        # Two Host headers (a proxy might read the other one): refused, raw on the socket.
        with socket.create_connection(("127.0.0.1", int(port)), timeout=30) as connection:
            connection.sendall(b"GET /v2/models/tiny HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                               b"Host: rebind.attacker.example\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := connection.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    finally:
        output = server.stop()
    assert "Traceback" not in output
