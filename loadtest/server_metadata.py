"""A model's input size from a sparsegate server's metadata (`GET /v2/models/{model}`), for
load tests that must shape their requests before they start."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

WAIT_SECONDS = 60.0


def model_input_size(host: str, model: str, seconds: float = WAIT_SECONDS,
                     pause: float = 1.0) -> int:
    """The model's input size. A swarm started while the servers come up, or behind a load
    balancer whose upstream is briefly busy, is answered by a connection error or a 5xx: those
    are retried for `seconds`; a 4xx (no such model, a missing API key) is raised at once.
    Under locust, `time.sleep` is gevent's, so the wait blocks no other greenlet."""
    url = f"{host.rstrip('/')}/v2/models/{model}"
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                return int(json.loads(response.read())["inputs"][0]["shape"][1])
        except urllib.error.HTTPError as error:
            if error.code < 500 or time.monotonic() > deadline:
                raise
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(pause)
