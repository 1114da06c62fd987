"""scripts/audit_latest.py, the audit's fallback, offline: PyPI answers through a mock transport.
It must never call a distribution clean unless it is the release whose vulnerabilities PyPI
listed, and it must say what holds an older one back."""

import importlib.util
from pathlib import Path

import httpx

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "audit_latest.py"
spec = importlib.util.spec_from_file_location("audit_latest", SCRIPT)
audit_latest = importlib.util.module_from_spec(spec)
spec.loader.exec_module(audit_latest)


def project(version: str, vulnerabilities=(), releases=None, requires_python=None) -> dict:
    return {"info": {"version": version, "requires_python": requires_python},
            "vulnerabilities": list(vulnerabilities), "releases": releases or {version: [{}]}}


def client_answering(pages: dict[str, dict]) -> httpx.Client:
    def answer(request: httpx.Request) -> httpx.Response:
        name = request.url.path.split("/")[2]
        return httpx.Response(200, json=pages[name]) if name in pages else httpx.Response(404)
    return httpx.Client(transport=httpx.MockTransport(answer))


def test_only_the_latest_release_is_audited_and_its_vulnerabilities_are_reported():
    vuln = {"id": "PYSEC-1", "aliases": ["CVE-1"], "fixed_in": ["2.1"], "summary": "bad"}
    with client_answering({"a": project("2.0", [vuln]), "b": project("3.0")}) as client:
        found = audit_latest.check(client, "a", "2.0")
        older = audit_latest.check(client, "b", "2.9")
        missing = audit_latest.check(client, "c", "1.0")
    assert found["audited"] and [v["id"] for v in found["vulnerabilities"]] == ["PYSEC-1"]
    assert not older["audited"] and "not the latest release (3.0)" in older["why"]
    assert not missing["audited"] and "404" in missing["why"]


def test_held_by_names_the_dependents_pin_and_the_python_the_newer_releases_need():
    # scipy (installed with the dev extras) requires numpy<2.7: a latest numpy 99.0 is held
    # by it; and 99.0 needs a Python nobody has, so 2.0 is the newest release for this one.
    page = project("99.0", releases={"2.0": [{"requires_python": ">=3.8"}],
                                     "99.0": [{"requires_python": ">=3.99"}],
                                     "100.0rc1": [{}]}, requires_python=">=3.99")
    reasons = audit_latest.held_by("numpy", "2.0", page)
    assert any(r.startswith("scipy ") and "numpy<2.7" in r.replace(" ", "") for r in reasons)
    assert any(r.startswith("2.0 is its newest release for Python") for r in reasons)
    # Nothing holds back a distribution that no one pins and whose releases all install here.
    assert audit_latest.held_by("no-such-dist", "1.0", project("2.0")) == []
