"""Hostile artifacts against a real `sparsegate-serve`, started as the README starts it: one test
per attack (tests/hostile_artifacts.py builds them). A bad model found at start-up is logged and
left out while the good ones serve; loading it later answers 400 at once, naming files relative
to the repository; a config.json that is a FIFO neither hangs the load nor the model's lock."""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path

import httpx
import pytest

from tests.hostile_artifacts import attacks, copy_model, fifo_instead_of

from .conftest import ADMIN_HEADERS, ADMIN_KEY, INPUT_SIZE, Server, write_repository

BODY = {"instances": [[0.25] * INPUT_SIZE]}
ATTACK_NAMES = [attack.name for attack in attacks(Path("outside"))]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> tuple[Path, Path]:
    """A repository of good models (tiny, other), one model per attack, and "fifo", whose
    version 1 is good and version 2 has a FIFO for a config.json; and the weights file outside
    it that one attack links to."""
    root = tmp_path_factory.mktemp("hostile")
    repository = write_repository(root / "repo")
    good = repository / "tiny" / "2"
    (root / "outside").mkdir()
    outside = Path(shutil.copy(good / "model.safetensors", root / "outside"))
    for attack in attacks(outside):
        attack.edit(copy_model(good, repository, attack.name))
    copy_model(good, repository, "fifo", 1)
    fifo_instead_of("config.json")(copy_model(good, repository, "fifo", 2))
    return repository, outside


def start(repository: Path) -> Server:
    return Server(repository, "--model-control", "explicit",
                  env={"SPARSEGATE_API_KEY": ADMIN_KEY}, ready_timeout_s=60)


@pytest.fixture(scope="module")
def server(hostile):
    running = start(hostile[0])
    yield running
    running.stop()


def predict(server: Server, name: str) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/models/{name}:predict", json=BODY, timeout=10)


def load(server: Server, name: str, version: str | None = None) -> httpx.Response:
    body = {"parameters": {"version": version}} if version else None
    return httpx.post(f"{server.url}/v2/repository/models/{name}/load", json=body,
                      headers=ADMIN_HEADERS, timeout=10)


def test_bad_models_at_start_up_are_reported_and_left_out_while_the_good_ones_serve(hostile):
    running = start(hostile[0])
    try:
        assert predict(running, "tiny").status_code == 200
        assert predict(running, "other").status_code == 200
        assert predict(running, "fifo").json()["model_version"] == "1"
        for name in ATTACK_NAMES:
            assert predict(running, name).status_code == 404, name
    finally:
        log = running.stop()
    for name in ATTACK_NAMES:
        assert f"not serving {name}: " in log, name
    assert "Application startup failed" not in log and "Traceback" not in log
    assert str(hostile[0]) not in log  # the log names models, not where they lie


@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_loading_a_hostile_artifact_answers_400_at_once(server, hostile, name):
    repository, outside = hostile
    attack = {a.name: a for a in attacks(outside)}[name]
    started = time.monotonic()
    response = load(server, name, "1")
    assert time.monotonic() - started < 5
    assert response.status_code == 400, response.text
    message = response.json()["error"]
    assert attack.words in message
    assert message.startswith(f"refused to load {name!r}: {name}/1")  # relative paths
    assert str(repository.parent) not in message and "/dev/zero" not in message
    assert hashlib.sha256(outside.read_bytes()).hexdigest() not in message
    assert predict(server, "tiny").status_code == 200


def test_a_fifo_config_neither_hangs_the_load_nor_the_models_lock(server):
    for _ in range(2):  # the first refusal left the lock free
        started = time.monotonic()
        response = load(server, "fifo", "2")
        assert time.monotonic() - started < 5
        assert response.status_code == 400, response.text
        assert "fifo/2/config.json: config file is a FIFO" in response.json()["error"]
    response = httpx.post(f"{server.url}/v2/repository/models/fifo/unload",
                          headers=ADMIN_HEADERS, timeout=10)
    assert response.status_code == 200, response.text
    assert predict(server, "fifo").status_code == 404
    assert load(server, "fifo").json()["version"] == "1"  # the newest version that is a model
    assert predict(server, "fifo").status_code == 200
