"""A server whose models are all served through onnxruntime needs neither torch, nor `onnx`
(the graph builder), nor the training code: started with those packages absent, it answers v1
and v2 requests exactly as a server with them does.

Two ways of taking them away:
- in this environment, with the packages made unimportable (`without_packages.py`);
- in an environment made only from the `serve-onnx` extra (`pip install .[serve-onnx]`), where
  they are not installed: `.venv-serve-onnx` (made by `.ci/run`, or by hand with `python3 -m
  venv .venv-serve-onnx && .venv-serve-onnx/bin/pip install '.[serve-onnx]'`), or the
  interpreter named by SPARSEGATE_SERVE_ONNX_PYTHON. Without one that test skips and says so;
  with SPARSEGATE_REQUIRE_SERVE_ONNX=1 (CI) it fails instead.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from benchmarks.server_process import ServerProcess
from service.app import create_app

from .conftest import INPUT_SIZE, settings
from .environments import ROOT, SERVE_ONNX
from .test_api import inputs, reference

ABSENT = "torch,onnx,training"
WITHOUT = [sys.executable, str(Path(__file__).with_name("without_packages.py")), ABSENT, "-m"]
MODELS = ("tiny", "chained")


def ask(client: httpx.Client | TestClient, rows: list[list[float]]) -> dict:
    """What the server says about its models and to one v1 and one v2 request per model."""
    said = {"models": client.get("/v1/models").json()}
    for model in MODELS:
        v1 = client.post(f"/v1/models/{model}:predict", json={"instances": rows})
        v2 = client.post(f"/v2/models/{model}/infer", json={"inputs": [
            {"name": "input", "shape": [len(rows), INPUT_SIZE], "datatype": "FP32",
             "data": rows}]})
        assert v1.status_code == 200 and v2.status_code == 200, (v1.text, v2.text)
        said[model] = {"v1": v1.json()["predictions"], "v2": v2.json()["outputs"]}
    return said


def without_timings(said: dict) -> dict:
    """The answers with what differs from run to run (timings) left out."""
    for model in MODELS:
        for prediction in said[model]["v1"]:
            prediction.pop("timings", None)
    return said


@pytest.fixture(scope="module")
def expected(onnx_repository) -> dict:
    """The onnxruntime backend's answers in this process, where torch and onnx are present."""
    rows = inputs(5, seed=11)
    app = create_app(settings(onnx_repository, backend="onnxruntime", models=list(MODELS)))
    with TestClient(app) as client:
        return {"rows": rows, "said": without_timings(ask(client, rows))}


def served_by(launcher: list[str], repository: Path, rows: list[list[float]]) -> dict:
    with ServerProcess(repository, "--backend", "onnxruntime", "--models", *MODELS,
                       launcher=launcher) as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        return without_timings(ask(client, rows))


def check_answers(said: dict, expected: dict, repository: Path) -> None:
    assert said == expected["said"]
    backends = {v["backend"] for m in said["models"]["models"] for v in m["versions"]}
    assert backends == {"onnxruntime"}
    for model in MODELS:  # and they are the network's answers
        probabilities, active = reference(repository, model, "1", expected["rows"])
        got = said[model]["v1"]
        np.testing.assert_allclose([p["probabilities"] for p in got], probabilities, atol=1e-5)
        assert [p["compute"]["active_blocks"] for p in got] == active.tolist()


def test_the_packages_are_really_taken_away():
    done = subprocess.run([*WITHOUT, "models.gated_network"], capture_output=True, text=True,
                          cwd=ROOT)
    assert done.returncode != 0 and "No module named 'torch'" in done.stderr


def test_onnx_models_serve_with_torch_onnx_and_training_unimportable(onnx_repository, expected):
    check_answers(served_by(WITHOUT, onnx_repository, expected["rows"]), expected,
                  onnx_repository)


def test_onnx_models_serve_from_the_serve_onnx_extra_alone(onnx_repository, expected):
    python = SERVE_ONNX.python()
    for package in ("torch", "onnx"):
        probe = subprocess.run([python, "-c", f"import {package}"], capture_output=True,
                               cwd="/")  # not this checkout's folders
        assert probe.returncode != 0, f"{package} is installed in {python}'s environment"
    # The package ships its training code; the server must not import it.
    launcher = [python, str(Path(__file__).with_name("without_packages.py")), "training", "-m"]
    check_answers(served_by(launcher, onnx_repository, expected["rows"]), expected,
                  onnx_repository)


def test_a_graph_on_sparsegate_operators_serves_from_the_serve_onnx_extra_alone(
        operators_repository):
    # The operators' C sources ship in the package and build there, without torch or onnx.
    python = SERVE_ONNX.python()
    launcher = [python, str(Path(__file__).with_name("without_packages.py")), "training", "-m"]
    rows = inputs(5, seed=12)
    said = served_by(launcher, operators_repository, rows)
    for model in MODELS:
        probabilities, active = reference(operators_repository, model, "1", rows)
        got = said[model]["v1"]
        np.testing.assert_allclose([p["probabilities"] for p in got], probabilities, atol=1e-5)
        assert [p["compute"]["active_blocks"] for p in got] == active.tolist()
        assert [p["compute"]["computed_blocks"] for p in got] == active.tolist()
