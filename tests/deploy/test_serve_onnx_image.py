"""The serve-onnx image (deploy/Dockerfile): built for real, run against a repository of an
exported model, it answers as the model does and holds neither torch nor onnx. Runs wherever a
Docker engine answers (CI starts one: .ci/run); skipped elsewhere."""

from __future__ import annotations

import subprocess

import httpx
import numpy as np
import pytest

from benchmarks.server_process import free_port, wait_until_ready

from ..service.conftest import write_onnx_repository
from ..service.test_api import inputs, reference
from .docker_setup import ROOT, engine_answers, offline_build_settings

pytestmark = pytest.mark.skipif(not engine_answers(), reason="no Docker engine answers here")
IMAGE = "sparsegate-serve-onnx-test"


def docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def image() -> str:
    settings = offline_build_settings()
    build_args = [arg for key, name in (("SPARSEGATE_BASE_IMAGE", "BASE_IMAGE"),
                                        ("SPARSEGATE_PIP_ARGS", "PIP_ARGS"))
                  if key in settings for arg in ("--build-arg", f"{name}={settings[key]}")]
    built = subprocess.run(["docker", "build", "-q", "-f", "deploy/Dockerfile", "--target",
                            "serve-onnx", "--network", "host", *build_args, "-t", IMAGE, "."],
                           cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    return IMAGE


@pytest.mark.timeout(1500)
def test_the_serve_onnx_image_serves_exported_models_without_torch(image, tmp_path):
    repository = write_onnx_repository(tmp_path / "repo")
    for package in ("torch", "onnx"):
        probe = docker("run", "--rm", image, "python", "-c", f"import {package}")
        assert probe.returncode != 0 and "No module named" in probe.stderr, probe.stderr
    port = free_port()
    started = docker("run", "-d", "--rm", "--network", "host", "-e",
                     f"SPARSEGATE_PORT={port}", "-e", "SPARSEGATE_MODELS=[\"tiny\"]", "-v",
                     f"{repository}:/models:ro", image)
    assert started.returncode == 0, started.stderr
    container = started.stdout.strip()
    try:
        url = f"http://127.0.0.1:{port}"
        assert wait_until_ready(url, 120), docker("logs", container).stderr[-3000:]
        rows = inputs(4, seed=21)
        answer = httpx.post(f"{url}/v1/models/tiny:predict", json={"instances": rows},
                            timeout=30)
        assert answer.status_code == 200, answer.text + docker("logs", container).stderr
        listed = httpx.get(f"{url}/v1/models", timeout=10).json()["models"][0]["versions"][0]
    finally:
        docker("stop", container)
    assert listed["backend"] == "onnxruntime"
    predictions = answer.json()["predictions"]
    probabilities, active = reference(repository, "tiny", "1", rows)
    np.testing.assert_allclose([p["probabilities"] for p in predictions], probabilities,
                               atol=1e-5)
    assert [p["compute"]["active_blocks"] for p in predictions] == active.tolist()
