"""Interpreters of other Python environments that some tests run: found at a path or named by
an environment variable; without one the test skips and says how to make it, or fails where CI
requires it (`.ci/run` makes both)."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Environment:
    variable: str  # names the interpreter, where set
    venv: str  # else this folder under the checkout holds it
    imports: str  # what it must be able to import
    make: str  # the commands that make it
    require: str  # set to "1", a missing interpreter fails the test instead of skipping it

    def python(self) -> str:
        python = os.environ.get(self.variable) or str(ROOT / self.venv / "bin" / "python")
        found = Path(python).is_file() and subprocess.run(
            [python, "-c", f"import {self.imports}"], capture_output=True).returncode == 0
        if not found:
            message = (f"no interpreter that can import {self.imports} at {python}: make one "
                       f"with `{self.make}`")
            if os.environ.get(self.require) == "1":
                pytest.fail(message)
            pytest.skip(message)
        return python


# KServe's SDK pins versions the server's dependencies exceed.
KSERVE = Environment("SPARSEGATE_KSERVE_PYTHON", ".venv-kserve", "kserve",
                     "python3 -m venv .venv-kserve && .venv-kserve/bin/pip install "
                     "kserve==0.21.0", "SPARSEGATE_REQUIRE_KSERVE")
# The serve-onnx extra alone: no torch, no onnx.
SERVE_ONNX = Environment("SPARSEGATE_SERVE_ONNX_PYTHON", ".venv-serve-onnx",
                         "onnxruntime, fastapi", "python3 -m venv .venv-serve-onnx && "
                         ".venv-serve-onnx/bin/pip install '.[serve-onnx]'",
                         "SPARSEGATE_REQUIRE_SERVE_ONNX")
# MLServer, the peer server `benchmarks.peer` measures against: its own dependency pins.
MLSERVER = Environment("SPARSEGATE_PEER_PYTHON", ".venv-mlserver", "mlserver, onnxruntime",
                       "python3 -m venv .venv-mlserver && .venv-mlserver/bin/pip install "
                       "mlserver==1.7.1 onnxruntime numpy", "SPARSEGATE_REQUIRE_MLSERVER")
