"""The server freezes what is alive once its models are loaded, so the collector's full
collections walk only what requests made since (`service.heap`); each load or unload freezes
afresh, having first collected what the change left unreachable."""

from __future__ import annotations

import gc
import weakref

from fastapi.testclient import TestClient

from service.app import create_app
from service.heap import freeze_long_lived

from .conftest import settings


class _Cycle:
    def __init__(self) -> None:
        self.me = self  # unreachable only through the collector, never by reference counts


def test_a_freeze_frees_what_an_earlier_freeze_held_once_it_is_unreachable():
    held = _Cycle()
    alive = weakref.ref(held)
    freeze_long_lived()
    assert gc.get_freeze_count() > 0
    del held
    gc.collect()
    assert alive() is not None  # frozen: a collection does not reach it
    freeze_long_lived()
    assert alive() is None
    gc.unfreeze()


def test_objects_are_frozen_once_the_models_are_loaded_and_after_each_change(admin_client):
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    assert admin_client.post("/v2/repository/models/tiny/unload").status_code == 200
    assert gc.get_freeze_count() > 0
    gc.unfreeze()
    assert admin_client.post("/v2/repository/models/tiny/load").status_code == 200
    assert gc.get_freeze_count() > 0
    gc.unfreeze()


def test_the_server_starts_frozen(repository):
    gc.unfreeze()
    with TestClient(create_app(settings(repository))) as client:
        assert client.get("/v2/health/ready").status_code == 200
        assert gc.get_freeze_count() > 0
    gc.unfreeze()
