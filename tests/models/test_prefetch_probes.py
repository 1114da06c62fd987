"""Whether the C kernels prefetch in each way the library chooses (models/skip/csrc/
prefetch_probes.h: one-row groups ahead in their panels, the tiles kernel its next tile):
measured when the library loads, or as the way's variable asks, and a value that names no way
refused by the engine's library and by the onnxruntime operators' alike. Both settings compute
the same products (tests/models/test_native_kernels.py runs them each way)."""

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
WAYS = sorted(c_kernels.PREFETCH_WAYS)


def load_script(way: str) -> str:
    return ("from models.skip import c_kernels\n"
            "k = c_kernels.load()\n"
            f"print(k.prefetches({way!r}), k.probes[{way!r}] is not None)\n")


def variable(way: str) -> str:
    return c_kernels.PREFETCH_WAYS[way][3]


def run(script: str, way: str, asked: str) -> subprocess.CompletedProcess:
    """`script` in a new process (the setting is the library's, once per process) with the
    variable of `way` set to `asked`."""
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=ROOT, timeout=300, env={**os.environ, variable(way): asked})


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("asked, setting", [("on", "True"), ("off", "False")])
def test_the_variable_sets_the_way_and_nothing_is_measured(way, asked, setting):
    done = run(load_script(way), way, asked)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == [setting, "False"]


@pytest.mark.parametrize("way", WAYS)
def test_measure_times_both_ways(way):
    done = run(load_script(way), way, "measure")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[1] == "True"


@pytest.mark.parametrize("way", WAYS)
def test_a_value_that_names_no_way_is_refused(way):
    done = run(load_script(way), way, "sometimes")
    assert done.returncode != 0
    assert f"{variable(way)} must be on, off or measure" in done.stderr


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None,
                    reason="onnxruntime is not installed")
@pytest.mark.parametrize("way", WAYS)
def test_the_operators_refuse_a_value_that_names_no_way(way):
    script = ("from models.skip import onnx_ops; import onnxruntime as ort\n"
              "try:\n    onnx_ops.register(ort.SessionOptions())\n"
              "except Exception as e:\n    print(e)\n")
    done = run(script, way, "sometimes")
    assert f"{variable(way)} must be on, off or measure" in done.stdout, (
        done.stdout + done.stderr)


@pytest.mark.parametrize("way", WAYS)
def test_the_measured_way_follows_the_probes_medians(way, monkeypatch):
    # The prefetches are kept unless the way without them took under PROBE_MARGIN of their time.
    margin = float(re.search(r"#define PROBE_MARGIN ([0-9.]+)",
                             c_kernels.SOURCE.with_name("prefetch_probes.h").read_text())[1])
    monkeypatch.delenv(variable(way), raising=False)
    measured = kernels.prefetches(way)
    try:
        for _ in range(2):
            chosen = kernels.choose_prefetches(way)
            probe = kernels.probes[way]
            assert probe.prefetching_ms > 0 and probe.plain_ms > 0
            assert chosen == kernels.prefetches(way)
            assert chosen == (not probe.plain_ms < margin * probe.prefetching_ms)
    finally:
        kernels.set_prefetches(way, measured)


def test_each_way_is_its_own_setting():
    measured = {way: kernels.prefetches(way) for way in WAYS}
    try:
        for way in WAYS:
            for on in (True, False):
                kernels.set_prefetches(way, on)
                others = {w: kernels.prefetches(w) for w in WAYS if w != way}
                kernels.set_prefetches(way, not on)
                assert {w: kernels.prefetches(w) for w in WAYS if w != way} == others
                assert kernels.prefetches(way) is (not on)
    finally:
        for way, on in measured.items():
            kernels.set_prefetches(way, on)
