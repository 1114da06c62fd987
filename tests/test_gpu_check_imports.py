"""`scripts/device-check` runs on a GPU machine whose Python has torch, Triton, numpy, onnx
and pytest but none of the web stack. Its test modules and benchmarks must import there: with
the server's own dependencies made unimportable, pytest collects the GPU tests and the GPU
benchmarks import. Fails where a module on that path imports FastAPI, pydantic or the like."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WITHOUT = ROOT / "tests" / "service" / "without_packages.py"
# Installed for the server alone (the serve extras), absent from the GPU machine's image.
WEB_STACK = "fastapi,fastapi_offline,pydantic,pydantic_settings,uvicorn,starlette,orjson,simdjson"
GPU_TESTS = ("tests/models/test_triton_skip.py", "tests/benchmarks/test_cuda_cases.py",
             "tests/test_gpu_engine.py")
GPU_BENCHMARKS = ("benchmarks.skip", "benchmarks.cuda_cases", "benchmarks.cuda_tune",
                  "benchmarks.cuda_profile")


def _without_web(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(WITHOUT), WEB_STACK, *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_gpu_tests_collect_without_the_web_stack():
    done = _without_web("-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                        *GPU_TESTS)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for path in GPU_TESTS:
        assert path in done.stdout


def test_gpu_benchmarks_show_their_help_without_the_web_stack():
    for module in GPU_BENCHMARKS:
        done = _without_web("-m", module, "--help")
        assert done.returncode == 0, (module, done.stderr[-3000:])
