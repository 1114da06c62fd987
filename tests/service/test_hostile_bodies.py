"""One client sending pathological bodies back to back must not stall the others: a real
`sparsegate-serve`, a health prober and an inference client measured alone and then beside an
attacker (`benchmarks.hostile_load`, the measurement of `python -m benchmarks.hostile_bodies`).

Without the bounds, these bodies took the health p99 to about 2 s and the inference p50 to
hundreds of times its unloaded value; with them, the benchmark measures the health p99 within
100 ms and the inference p50 within 2x. The tolerances here are wider, for a noisy shared
machine (2.5x on health, 3x plus 5 ms on inference), and still fail by far without the bounds.
"""

from __future__ import annotations

import pytest

from benchmarks.hostile_load import attacks, measure

from .conftest import INPUT_SIZE, Server, write_repository

SECONDS = 2.0
HEALTH_P99_TOLERANCE_MS = 250.0  # the promise is 100 ms
INFER_P50_TOLERANCE_RATIO = 3.0  # the promise is 2x, measured by the benchmark


@pytest.fixture(scope="module")
def module_server(tmp_path_factory):
    running = Server(write_repository(tmp_path_factory.mktemp("repo")))  # default limits
    yield running
    running.stop()


@pytest.fixture(scope="module")
def unloaded(module_server) -> dict:
    measure(module_server.port, "tiny", INPUT_SIZE, 0.5)  # warm-up
    return measure(module_server.port, "tiny", INPUT_SIZE, SECONDS)


@pytest.mark.parametrize("name", ["v1 empty rows", "v2 one-number rows"])
def test_pathological_bodies_do_not_stall_other_clients(module_server, unloaded, name):
    attack = next(a for a in attacks("tiny", INPUT_SIZE, 8 * 1024 * 1024, 1024)
                  if a.name == name)
    loaded = measure(module_server.port, "tiny", INPUT_SIZE, SECONDS, attack)
    assert loaded["health_p99_ms"] <= HEALTH_P99_TOLERANCE_MS, (loaded, unloaded)
    assert loaded["infer_p50_ms"] <= INFER_P50_TOLERANCE_RATIO * unloaded["infer_p50_ms"] + 5, \
        (loaded, unloaded)
    # The attack ran (each body refused, its sender held until the close: about 1 a second).
    assert sum(loaded["attack_answers"].values()) >= 1, loaded
