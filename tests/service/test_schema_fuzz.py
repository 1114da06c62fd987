"""Schemathesis against a real server from its own OpenAPI schema (`loadtest.fuzz`), at the
fast CI size: every check but positive_data_acceptance (why: loadtest/fuzz.py), both passes,
at least 1000 requests, no 5xx, no traceback in the server's log. The full run (40 examples
per operation) is documented in docs/reliability.md."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from loadtest import fuzz

from .conftest import write_repository

pytestmark = pytest.mark.skipif(shutil.which("schemathesis") is None
                                and not (fuzz.Path(fuzz.sys.executable).parent
                                         / "schemathesis").exists(),
                                reason="schemathesis is not installed (the dev extra has it)")


def test_generated_requests_get_no_server_error_and_conform_to_the_schema(tmp_path):
    repository = write_repository(tmp_path / "repo")
    out = tmp_path / "fuzz"
    code = fuzz.main(["--model-repository", str(repository), "--model", "tiny",
                      "--max-examples", "5", "--seed", "0", "--out", str(out)])
    summary = json.loads((out / "fuzz.json").read_text())
    assert code == 0, summary
    assert summary["requests"] >= 1000
    assert summary["server_errors"] == 0 and summary["server_tracebacks"] == 0
    served = summary["passes"]["served"]["status_counts"]
    assert served.get("200", 0) > 0  # the served pass reached the model, not only 404s
    assert all(int(status) < 500 for p in summary["passes"].values()
               for status in p["status_counts"])
    assert "SPARSEGATE_API_KEY" not in os.environ  # the key went to the server only


def test_the_summary_counts_server_errors_from_the_recording(tmp_path):
    har = tmp_path / "run.har"
    entries = [{"request": {"method": "POST", "url": "http://h/v2/models/tiny/infer"},
                "response": {"status": status}} for status in (200, 400, 500, 503)]
    har.write_text(json.dumps({"log": {"entries": entries}}))
    summary = fuzz.summarise_har(har)
    assert summary["requests"] == 4 and summary["server_errors"] == 2
    assert summary["requests_per_operation"] == {"POST /v2/models/{name}/infer": 4}
