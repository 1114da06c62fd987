"""The load tests' metadata read retries what a starting server answers and nothing else."""

from __future__ import annotations

import json
import threading
import urllib.error
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from loadtest.server_metadata import model_input_size


def _server(statuses: list[int]):
    """A server that answers the given statuses in turn, then 200 with metadata of 64 inputs;
    it records the paths it was asked for."""
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            asked.append(self.path)
            status = statuses.pop(0) if statuses else 200
            body = json.dumps({"inputs": [{"name": "input", "shape": [-1, 64]}]}).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, asked


def test_a_starting_server_is_retried_until_it_answers():
    server, asked = _server([503, 502])
    try:
        host = f"http://127.0.0.1:{server.server_address[1]}/"
        assert model_input_size(host, "paper-st", seconds=10, pause=0.01) == 64
        assert asked == ["/v2/models/paper-st"] * 3
    finally:
        server.shutdown()


def test_a_missing_model_is_raised_at_once():
    server, asked = _server([404])
    try:
        host = f"http://127.0.0.1:{server.server_address[1]}"
        with pytest.raises(urllib.error.HTTPError, match="404"):
            model_input_size(host, "nope", seconds=10, pause=0.01)
        assert len(asked) == 1
    finally:
        server.shutdown()


def test_a_server_that_stays_down_is_raised_after_the_wait():
    server, asked = _server([503] * 1000)
    try:
        host = f"http://127.0.0.1:{server.server_address[1]}"
        with pytest.raises(urllib.error.HTTPError, match="503"):
            model_input_size(host, "paper-st", seconds=0.2, pause=0.01)
        assert len(asked) > 1
    finally:
        server.shutdown()
