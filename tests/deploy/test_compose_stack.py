"""The docker-compose deployment, built and brought up for real by scripts/compose-check
(~1 min with the images built, ~6 min from nothing). Runs wherever a Docker engine answers
(CI installs and starts one: .ci/run); skipped elsewhere."""

from __future__ import annotations

import os
import subprocess

import pytest

from .docker_setup import ROOT, engine_answers, offline_build_settings

pytestmark = pytest.mark.skipif(not engine_answers(), reason="no Docker engine answers here")


@pytest.mark.timeout(1800)
def test_compose_stack_serves_through_the_load_balancer():
    env = {**os.environ, **offline_build_settings()}
    check = subprocess.run(["bash", "scripts/compose-check"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=1500)
    output = check.stdout + check.stderr
    assert check.returncode == 0, output[-20000:]
    assert "all checks passed" in output
    assert "answered by 3 replicas" in output
