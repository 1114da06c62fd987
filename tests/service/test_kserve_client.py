"""KServe's own Python client (`kserve.InferenceRESTClient`, v1 and v2 REST, JSON and binary
tensors) against a real `sparsegate-serve`.

KServe's SDK pins versions the server's dependencies exceed, so it lives in its own virtual
environment: `.venv-kserve` (made by `.ci/run`, or by hand with
`python3 -m venv .venv-kserve && .venv-kserve/bin/pip install kserve==0.21.0`), or the
interpreter named by SPARSEGATE_KSERVE_PYTHON. Without one the test skips and says so; with
SPARSEGATE_REQUIRE_KSERVE=1 (CI) it fails instead.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np

from .environments import KSERVE
from .test_api import inputs, reference

CALLS = Path(__file__).with_name("kserve_calls.py")


def test_kserve_rest_client_v1_and_v2_json_and_binary(server, repository):
    python = KSERVE.python()
    rows = inputs(3, seed=4)
    done = subprocess.run([python, str(CALLS), server.url, "tiny", json.dumps(rows)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    calls = json.loads(done.stdout)
    assert calls["v1_live"] is True and calls["v1_model_ready"] is True
    assert calls["v2_live"] is True and calls["v2_ready"] is True
    assert calls["v2_model_ready"] is True
    probabilities, active = reference(repository, "tiny", "2", rows)
    predictions = calls["v1_predict"]["predictions"]
    np.testing.assert_allclose([p["probabilities"] for p in predictions], probabilities,
                               atol=1e-5)
    assert [p["compute"]["active_blocks"] for p in predictions] == active.tolist()
    for kind in ("json", "binary"):
        answer = calls[f"v2_infer_{kind}"]
        assert answer["model_name"] == "tiny" and answer["id"] == "kserve-1"
        np.testing.assert_allclose(answer["probabilities"], probabilities, atol=1e-5)
        assert answer["active_blocks"] == active.tolist()
        assert answer["parameters"]["executed_macs"] > 0, kind
