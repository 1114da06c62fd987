"""Against a real `sparsegate-serve` (uvicorn) on loopback: the real tritonclient HTTP client,
batching under concurrent HTTP load, overload, SIGTERM draining, and the command line."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from .conftest import ADMIN_HEADERS, CLASSES, INPUT_SIZE, Server
from .test_api import inputs, reference

tritonclient_http = pytest.importorskip("tritonclient.http")


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_round_trip(admin_server, repository, binary):
    client = tritonclient_http.InferenceServerClient(admin_server.url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("tiny") and client.is_model_ready("tiny", "2")
    assert not client.is_model_ready("tiny", "1")
    meta = client.get_model_metadata("tiny")
    assert meta["inputs"][0]["shape"] == [-1, INPUT_SIZE]
    assert client.get_server_metadata()["name"] == "sparsegate"
    x = np.array(inputs(3), dtype=np.float32)
    tensor = tritonclient_http.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    outputs = [tritonclient_http.InferRequestedOutput(name, binary_data=binary)
               for name in ("probabilities", "predicted_class", "active_blocks")]
    result = client.infer("tiny", [tensor], outputs=outputs)
    probabilities, active = reference(repository, "tiny", "2", x.tolist())
    np.testing.assert_allclose(result.as_numpy("probabilities"), probabilities, atol=1e-5)
    assert result.as_numpy("probabilities").shape == (3, CLASSES)
    assert result.as_numpy("predicted_class").tolist() == probabilities.argmax(-1).tolist()
    assert result.as_numpy("active_blocks").tolist() == active.tolist()
    parameters = result.get_response()["parameters"]
    assert parameters["executed_macs"] > 0 and "compute_reports" in parameters
    # Model management through the client's repository calls, with the key.
    index = {(m["name"], m["version"])
             for m in client.get_model_repository_index(headers=ADMIN_HEADERS)}
    assert ("tiny", "1") in index
    client.unload_model("other", headers=ADMIN_HEADERS)
    assert not client.is_model_ready("other")
    client.load_model("other", headers=ADMIN_HEADERS)
    assert client.is_model_ready("other")
    client.close()


def test_concurrent_http_requests_are_batched_and_answered_correctly(repository):
    server = Server(repository, "--max-batch-delay-ms", "20", "--max-batch-size", "32")
    try:
        xs = [inputs(1 + i % 3, seed=i) for i in range(48)]
        with httpx.Client(base_url=server.url, timeout=30) as client, \
                ThreadPoolExecutor(16) as pool:
            responses = list(pool.map(
                lambda x: client.post("/v1/models/tiny:predict", json={"instances": x}), xs))
        batch_sizes = []
        for x, response in zip(xs, responses, strict=True):
            assert response.status_code == 200, response.text
            body = response.json()
            probabilities, active = reference(repository, "tiny", "2", x)
            np.testing.assert_allclose([p["probabilities"] for p in body["predictions"]],
                                       probabilities, atol=1e-5)
            assert [p["compute"]["active_blocks"] for p in body["predictions"]] == \
                active.tolist()
            batch_sizes.append(body["timings"]["batch_size"])
        assert max(batch_sizes) > 3  # requests shared forwards
        metrics = httpx.get(f"{server.url}/metrics").text
        assert 'sparsegate_examples_total{model="tiny"} ' + str(
            float(sum(len(x) for x in xs))) in metrics
    finally:
        server.stop()


def infer_body(examples: int) -> dict:
    return {"inputs": [{"name": "input", "shape": [examples, INPUT_SIZE], "datatype": "FP32",
                        "data": [v for row in inputs(examples) for v in row]}]}


def test_a_lone_request_runs_at_once_and_requests_together_still_batch(server):
    """With no other request in progress the forward runs within the request (no time in a
    queue), up to --alone-forward-examples (64 by default); requests in progress together still
    queue and share forwards."""
    body = infer_body(1)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for examples in (1, 1, 1, 8, 64):
            parameters = client.post("/v2/models/tiny/infer",
                                     json=infer_body(examples)).json()["parameters"]
            assert parameters["queue_ms"] == 0.0 and parameters["batch_size"] == examples
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda _: client.post("/v2/models/tiny/infer", json=body),
                                    range(96)))
    assert all(a.status_code == 200 for a in answers)
    assert max(a.json()["parameters"]["batch_size"] for a in answers) > 1


def test_past_alone_forward_examples_a_lone_request_goes_through_the_queue(repository):
    server = Server(repository, "--alone-forward-examples", "4")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            waited = {examples: client.post("/v2/models/tiny/infer", json=infer_body(
                examples)).json()["parameters"]["queue_ms"] for examples in (1, 4, 5, 16)}
    finally:
        server.stop()
    assert waited[1] == waited[4] == 0.0
    assert waited[5] > 0.0 and waited[16] > 0.0


def test_a_full_queue_answers_503_with_retry_after(repository):
    server = Server(repository, "--max-queue-examples", "2", "--max-batch-size", "1",
                    "--max-batch-delay-ms", "0", "--max-instances", "2")
    try:
        x = {"instances": inputs(2)}
        with httpx.Client(base_url=server.url, timeout=30) as client, \
                ThreadPoolExecutor(24) as pool:
            statuses = list(pool.map(lambda _: client.post("/v1/models/tiny:predict", json=x),
                                     range(96)))
        codes = {r.status_code for r in statuses}
        assert codes <= {200, 503} and 503 in codes and 200 in codes
        refused = next(r for r in statuses if r.status_code == 503)
        assert refused.headers["retry-after"] == "1" and "overloaded" in refused.json()["error"]
    finally:
        server.stop()


def test_sigterm_lets_requests_in_flight_finish(repository):
    # A long batching delay keeps requests in flight when the signal lands.
    server = Server(repository, "--max-batch-delay-ms", "1500", "--max-batch-size", "64")
    results: list[int] = []

    def send(i: int) -> None:
        response = httpx.post(f"{server.url}/v1/models/tiny:predict",
                              json={"instances": inputs(1, seed=i)}, timeout=30)
        results.append(response.status_code)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.5)  # all sent, none answered: they wait for the batch
    server.process.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(30)
    output = server.stop()
    assert results == [200] * 8, output
    # uvicorn exits by re-raising the signal it caught, after the graceful shutdown.
    assert server.process.returncode in (0, -signal.SIGTERM), output
    assert "Traceback" not in output, output


def _post_outcome(url: str, seed: int) -> str:
    """One prediction request on a new connection: "answered" (200, the whole body, one
    prediction per instance), "refused" (no connection), "unread" (the connection closed
    before any byte of a response: the server never took the request), or what went wrong
    once the response had begun ("cut ...", "bad ...")."""
    try:
        with httpx.stream("POST", f"{url}/v1/models/tiny:predict", timeout=30,
                          json={"instances": inputs(2, seed=seed)}) as response:
            try:
                body = response.read()
            except httpx.HTTPError as error:
                return f"cut: {type(error).__name__}: {error}"
    except httpx.ConnectError:
        return "refused"
    except (httpx.ReadError, httpx.RemoteProtocolError):
        return "unread"
    if response.status_code != 200:
        return f"bad: {response.status_code}"
    whole = len(json.loads(body)["predictions"]) == 2
    return "answered" if whole else "bad: incomplete body"


def test_sigterm_under_continuous_load_cuts_no_response(repository):
    # Clients keep sending, each request on a new connection, while the signal lands. Every
    # response the server began (its access log has a line for each, written as the response
    # starts) must reach its client whole; other requests may only be refused or closed
    # unread (connections queued but never taken once the server stopped accepting).
    server = Server(repository, "--max-batch-size", "16", "--log-level", "info")
    stop = threading.Event()
    outcomes: list[str] = []

    def client(seed: int) -> None:
        while not stop.is_set():
            outcome = _post_outcome(server.url, seed)
            outcomes.append(outcome)
            if outcome != "answered":
                time.sleep(0.01)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    time.sleep(2.0)
    answered_before = outcomes.count("answered")
    server.process.send_signal(signal.SIGTERM)
    server.process.wait(30)
    time.sleep(0.3)  # clients see the closed port
    stop.set()
    for t in threads:
        t.join(30)
    output = server.stop()
    assert answered_before > 20, outcomes[:5]
    assert set(outcomes) <= {"answered", "refused", "unread"}, sorted(set(outcomes))[:5]
    assert "refused" in outcomes  # the load really outlived the server
    began = len(re.findall(r'"POST /v1/models/tiny(?::|%3A)predict HTTP/1.1" 200', output))
    assert began == outcomes.count("answered"), (began, outcomes.count("answered"))
    assert "Traceback" not in output, output[-3000:]


def test_cli_refuses_bad_settings(tmp_path):
    run = subprocess.run([sys.executable, "-m", "service.cli", "--model-repository",
                          str(tmp_path), "--max-batch-size", "0"], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 2 and "max_batch_size" in run.stderr
    run = subprocess.run([sys.executable, "-m", "service.cli", "--model-repository",
                          str(tmp_path / "missing")], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 2 and "not a folder" in run.stderr
