"""How the C kernels prefetch in each setting the library chooses (models/skip/csrc/
prefetch_probes.h: one-row groups ahead in their panels or not, the tiles kernel's next tile not
at all, into every cache level or into L2): measured when the library loads, or as the
setting's variable asks, and a value that names no way refused by the engine's library and by
the onnxruntime operators' alike. Every way computes the same products
(tests/models/test_native_kernels.py runs them each way)."""

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
SETTINGS = c_kernels.PREFETCH_SETTINGS
PROBES = c_kernels.SOURCE.with_name("prefetch_probes.h").read_text()
EVERY_WAY = [(name, way) for name, setting in SETTINGS.items() for way in setting.ways]


def load_script(name: str) -> str:
    return ("from models.skip import c_kernels\n"
            "k = c_kernels.load()\n"
            f"print(k.prefetch({name!r}), k.probes[{name!r}] is not None)\n")


def run(script: str, name: str, asked: str) -> subprocess.CompletedProcess:
    """`script` in a new process (the setting is the library's, once per process) with the
    variable of setting `name` set to `asked`."""
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=ROOT, timeout=300, env={**os.environ, SETTINGS[name].variable: asked})


def refusal(name: str) -> str:
    return f"{SETTINGS[name].variable} must be {', '.join(SETTINGS[name].ways)} or measure"


@pytest.mark.parametrize("name, way", EVERY_WAY)
def test_the_variable_sets_the_way_and_nothing_is_measured(name, way):
    done = run(load_script(name), name, way)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == [way, "False"]


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_measure_times_every_way(name):
    done = run(load_script(name), name, "measure")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[1] == "True"


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_a_value_that_names_no_way_is_refused(name):
    done = run(load_script(name), name, "sometimes")
    assert done.returncode != 0
    assert refusal(name) in done.stderr


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None,
                    reason="onnxruntime is not installed")
@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_the_operators_refuse_a_value_that_names_no_way(name):
    script = ("from models.skip import onnx_ops; import onnxruntime as ort\n"
              "try:\n    onnx_ops.register(ort.SessionOptions())\n"
              "except Exception as e:\n    print(e)\n")
    done = run(script, name, "sometimes")
    assert refusal(name) in done.stdout, done.stdout + done.stderr


def test_the_operators_and_the_engine_name_the_same_ways():
    # ort_ops.c words its own refusals: they must list the ways the library takes.
    operators = c_kernels.SOURCE.with_name("ort_ops.c").read_text()
    for name in SETTINGS:
        assert refusal(name) in operators
        names = re.search(rf"{name.upper()}_WAYS\[\] = \{{(.*?)\}}", PROBES)[1]
        assert tuple(re.findall(r'"(\w+)"', names)) == SETTINGS[name].ways


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_the_measured_way_follows_the_probes_medians(name, monkeypatch):
    # The way the kernels had before they were measured (the prefetches, into every level) is
    # kept unless another took under PROBE_MARGIN of its time; then the fastest is taken.
    margin = float(re.search(r"#define PROBE_MARGIN ([0-9.]+)", PROBES)[1])
    preferred = {"one_row": "on", "tile": "l1"}[name]
    monkeypatch.delenv(SETTINGS[name].variable, raising=False)
    measured = kernels.prefetch(name)
    try:
        for _ in range(2):
            chosen = kernels.choose_prefetch(name)
            probe = kernels.probes[name]
            assert sorted(probe) == sorted(SETTINGS[name].ways)
            assert all(ms > 0 for ms in probe.values())
            assert chosen == kernels.prefetch(name)
            fastest = min(probe, key=probe.get)
            want = fastest if probe[fastest] < margin * probe[preferred] else preferred
            assert chosen == want, probe
    finally:
        kernels.set_prefetch(name, measured)


def test_each_setting_is_its_own_and_a_way_it_lacks_is_refused():
    measured = {name: kernels.prefetch(name) for name in SETTINGS}
    try:
        for name, way in EVERY_WAY:
            others = {n: kernels.prefetch(n) for n in SETTINGS if n != name}
            kernels.set_prefetch(name, way)
            assert kernels.prefetch(name) == way
            assert {n: kernels.prefetch(n) for n in SETTINGS if n != name} == others
        with pytest.raises(ValueError, match="one of off, l1, l2"):
            kernels.set_prefetch("tile", "on")
    finally:
        for name, way in measured.items():
            kernels.set_prefetch(name, way)
