"""Fixtures: a model repository of tiny trained-shape models written as real artifacts, the
app through its own test client, and a real uvicorn server on loopback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from benchmarks.server_process import ServerProcess
from models.gated_artifact import save_gated_network
from models.gated_network import GatedNetwork
from models.labelled_examples import EXAMPLES_FILE, encode_examples
from service.app import create_app
from service.config import Settings

from ..tiny_networks import tiny_network as tiny_network_of

INPUT_SIZE = 12
CLASSES = 3


SERVED_LAYERS = [
    {"blocks": 4, "block_size": 4, "gater_hidden": 6, "activation": "relu"},
    {"blocks": 8, "block_size": 1, "activation": "tanh", "gated": False},
    {"blocks": 4, "block_size": 2, "gater_hidden": 0, "activation": "relu"}]


def tiny_network(seed: int, estimator: str = "st") -> GatedNetwork:
    """A gated layer (4 blocks of 4), a dense layer reading it, a second gated layer."""
    model = tiny_network_of(SERVED_LAYERS, estimator=estimator, seed=seed,
                            input_size=INPUT_SIZE, num_classes=CLASSES, density=0.5)
    model.set_thresholds([0.0] * len(model.gated_layers))
    return model


def recorded_examples(input_size: int, num_classes: int, count: int = 4, seed: int = 0
                      ) -> dict[str, bytes]:
    """An artifact's labelled examples file: `count` inputs in [0, 1), labels in turn."""
    inputs = np.random.default_rng(seed).random((count, input_size))
    return {EXAMPLES_FILE: encode_examples(inputs, np.arange(count) % num_classes, "test")}


def write_repository(root: Path) -> Path:
    """tiny (versions 1 and 2, which records labelled examples) and other (version 1)."""
    for name, version, seed in (("tiny", 1, 0), ("tiny", 2, 1), ("other", 1, 2)):
        examples = recorded_examples(INPUT_SIZE, CLASSES) if version == 2 else None
        save_gated_network(tiny_network(seed), root, name, version,
                           {"metrics": {"test_density": [0.5, 0.5]}}, extra_files=examples)
    return root


def chained_network(seed: int) -> GatedNetwork:
    """Two gated layers back to back: the second reads the first's blocks."""
    model = tiny_network_of(
        [{"blocks": 4, "block_size": 4, "gater_hidden": 6, "activation": "relu"},
         {"blocks": 4, "block_size": 4, "gater_hidden": 0, "activation": "relu"}],
        estimator="rectifier", seed=seed, input_size=INPUT_SIZE, num_classes=CLASSES,
        density=0.5)
    model.set_thresholds([0.5] * len(model.gated_layers))
    return model


def write_onnx_repository(root: Path) -> Path:
    """tiny and chained (version 1 each) exported to model.onnx; unexported without it."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from models.skip.onnx_export import export_to_artifact

    for name, model in (("tiny", tiny_network(1)), ("chained", chained_network(3))):
        save_gated_network(model, root, name, 1, {"metrics": {"test_density": [0.5, 0.5]}})
        export_to_artifact(root, name, 1)
    save_gated_network(tiny_network(2), root, "unexported", 1)
    return root


@pytest.fixture(scope="package")
def onnx_repository(tmp_path_factory) -> Path:
    return write_onnx_repository(tmp_path_factory.mktemp("onnx") / "repo")


@pytest.fixture(scope="package")
def operators_repository(tmp_path_factory) -> Path:
    """tiny and chained exported on sparsegate's onnxruntime operators (`--custom-ops`)."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from models.skip import onnx_ops
    from models.skip.onnx_export import export_to_artifact

    if not onnx_ops.available():
        pytest.skip("sparsegate's onnxruntime operators need a C compiler")
    root = tmp_path_factory.mktemp("operators") / "repo"
    for name, model in (("tiny", tiny_network(1)), ("chained", chained_network(3))):
        save_gated_network(model, root, name, 1, {"metrics": {"test_density": [0.5, 0.5]}})
        _, metadata = export_to_artifact(root, name, 1, custom_ops=True)
        assert metadata["operators"]["domain"] == onnx_ops.DOMAIN
    return root


@pytest.fixture
def repository(tmp_path) -> Path:
    return write_repository(tmp_path / "repo")


def settings(repository: Path, **changes) -> Settings:
    # TestClient sends `Host: testserver`, a name, which the host guard refuses unless listed.
    changes.setdefault("allowed_hosts", ["testserver"])
    return Settings(model_repository=repository, warmup_batches=(1, 2), **changes)


def admin_settings(repository: Path, **changes) -> Settings:
    """Settings with model control on and keyed by `ADMIN_KEY`."""
    changes.setdefault("api_key", ADMIN_KEY)
    return settings(repository, model_control="explicit", **changes)


ADMIN_KEY = "test-admin-key"
ADMIN_HEADERS = {"X-API-Key": ADMIN_KEY}


@pytest.fixture
def client(repository):
    with TestClient(create_app(settings(repository))) as test_client:
        yield test_client


@pytest.fixture
def admin_client(repository):
    """The app with model control on; every request carries the key."""
    with TestClient(create_app(admin_settings(repository)), headers=ADMIN_HEADERS) as client:
        yield client


Server = ServerProcess  # sparsegate-serve on loopback, ready when built


@pytest.fixture
def server(repository):
    running = Server(repository)
    yield running
    running.stop()


@pytest.fixture
def admin_server(repository):
    """sparsegate-serve with model control on, keyed by ADMIN_KEY (given in the environment,
    as the README says to)."""
    running = Server(repository, "--model-control", "explicit",
                     env={"SPARSEGATE_API_KEY": ADMIN_KEY})
    yield running
    running.stop()
