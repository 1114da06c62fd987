"""Whether the C kernels' one-row groups prefetch ahead (models/skip/csrc/one_row_probe.h):
measured when the library loads, or as SPARSEGATE_ONE_ROW_PREFETCH asks, and a value that
names no way refused by the engine's library and by the onnxruntime operators' alike. Both
ways compute the same products (tests/models/test_native_kernels.py runs them each way)."""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from models.skip import c_kernels

kernels = c_kernels.load()
pytestmark = pytest.mark.skipif(kernels is None, reason="no C compiler built the kernels")
ROOT = Path(__file__).resolve().parents[2]
LOAD = ("from models.skip import c_kernels\n"
        "k = c_kernels.load()\n"
        "print(k.one_row_prefetch, k.one_row_probe is not None)\n")


def run(script: str, asked: str) -> subprocess.CompletedProcess:
    """`script` in a new process (the setting is the library's, once per process) with
    SPARSEGATE_ONE_ROW_PREFETCH set to `asked`."""
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=ROOT, timeout=300,
                          env={**os.environ, "SPARSEGATE_ONE_ROW_PREFETCH": asked})


@pytest.mark.parametrize("asked, setting", [("on", "True"), ("off", "False")])
def test_the_variable_sets_the_way_and_nothing_is_measured(asked, setting):
    done = run(LOAD, asked)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == [setting, "False"]


def test_measure_times_both_ways():
    done = run(LOAD, "measure")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[1] == "True"


def test_a_value_that_names_no_way_is_refused():
    done = run(LOAD, "sometimes")
    assert done.returncode != 0
    assert "SPARSEGATE_ONE_ROW_PREFETCH must be on, off or measure" in done.stderr


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None,
                    reason="onnxruntime is not installed")
def test_the_operators_refuse_a_value_that_names_no_way():
    script = ("from models.skip import onnx_ops; import onnxruntime as ort\n"
              "try:\n    onnx_ops.register(ort.SessionOptions())\n"
              "except Exception as e:\n    print(e)\n")
    done = run(script, "sometimes")
    assert "SPARSEGATE_ONE_ROW_PREFETCH must be on, off or measure" in done.stdout, (
        done.stdout + done.stderr)


def test_the_measured_way_follows_the_probes_medians(monkeypatch):
    # Prefetching is kept unless the layer without it took under PROBE_MARGIN of its time.
    margin = float(re.search(r"#define PROBE_MARGIN ([0-9.]+)",
                             c_kernels.SOURCE.with_name("one_row_probe.h").read_text())[1])
    monkeypatch.delenv("SPARSEGATE_ONE_ROW_PREFETCH", raising=False)
    measured = kernels.one_row_prefetch
    try:
        for _ in range(2):
            chosen = kernels.choose_one_row_prefetch()
            probe = kernels.one_row_probe
            assert probe.prefetching_ms > 0 and probe.plain_ms > 0
            assert chosen == kernels.one_row_prefetch
            assert chosen == (not probe.plain_ms < margin * probe.prefetching_ms)
    finally:
        kernels.set_one_row_prefetch(measured)
