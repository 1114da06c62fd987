"""The package's extras: the server of ONNX models installs without torch, and the full server
is that plus torch (the two lists are written out, so they must not drift apart)."""

import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def requirement_name(requirement: str) -> str:
    return requirement.split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip().lower()


def test_serve_is_serve_onnx_and_torch_and_neither_core_nor_serve_onnx_needs_torch():
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    extras = project["optional-dependencies"]
    assert set(extras["serve"]) - set(extras["serve-onnx"]) == {"torch>=2.4"}
    assert set(extras["serve-onnx"]) < set(extras["serve"])
    for requirements in (project["dependencies"], extras["serve-onnx"]):
        assert not {requirement_name(r) for r in requirements} & {"torch", "onnx", "triton"}
