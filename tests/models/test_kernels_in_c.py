"""The C kernels' products against a scalar reference in C alone
(`tests/models/csrc/kernels_against_reference.c`), built with the flags the library is built
with: here, for every kernel set this CPU runs, and for ARM (aarch64), cross-compiled and run
under qemu, where the portable set's 16-byte vectors are NEON's and its multiply-adds NEON's
fused `fmla`. The ARM check needs Debian's gcc-aarch64-linux-gnu and qemu-user; it skips
without them unless SPARSEGATE_REQUIRE_ARM=1 (as CI sets, having installed them)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from models.skip import c_kernels

HARNESS = Path(__file__).parent / "csrc" / "kernels_against_reference.c"
SOURCE_DIR = Path(c_kernels.__file__).parent / "csrc"
# The library's flags, for an executable: not a shared object.
FLAGS = [flag for flag in c_kernels.FLAGS if flag not in ("-shared", "-fPIC")]
ARM_COMPILER, ARM_RUNNER = "aarch64-linux-gnu-gcc", "qemu-aarch64"


def build(compiler: str, out: Path, *extra: str) -> Path:
    done = subprocess.run([compiler, *FLAGS, *extra, f"-I{SOURCE_DIR}", str(HARNESS), "-o",
                           str(out), *c_kernels.LIBRARIES], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def check(command: list[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return done.stdout


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_every_set_this_cpu_runs_matches_the_reference(tmp_path):
    out = check([str(build("cc", tmp_path / "kernels_check"))])
    checked = re.findall(r"checked set (\w+)", out)
    kernels = c_kernels.load()
    assert kernels is not None and checked == list(kernels.kernel_sets)


def arm_tools() -> bool:
    return all(shutil.which(tool) for tool in (ARM_COMPILER, ARM_RUNNER))


@pytest.mark.skipif(not arm_tools() and os.environ.get("SPARSEGATE_REQUIRE_ARM") != "1",
                    reason=f"needs {ARM_COMPILER} and {ARM_RUNNER} (apt-get install "
                           "gcc-aarch64-linux-gnu qemu-user)")
def test_the_portable_set_runs_on_arm_as_neon_and_matches_the_reference(tmp_path):
    assert arm_tools(), f"SPARSEGATE_REQUIRE_ARM=1 but {ARM_COMPILER} or {ARM_RUNNER} is missing"
    binary = build(ARM_COMPILER, tmp_path / "kernels_check_arm", "-static")
    out = check([ARM_RUNNER, str(binary)])
    assert re.findall(r"checked set (\w+)", out) == ["generic"]  # no x86 set is built there
    # The portable micro-kernels' multiply-adds are NEON's fused vector ones on four floats.
    listing = check(["aarch64-linux-gnu-objdump", "-d", "--no-show-raw-insn", str(binary)])
    tile = re.search(r"<tile_rows_4_generic[^>]*>:\n(.*?)\n\n", listing, re.S)
    assert tile, "the portable set's four-row tile was not found in the binary"
    assert len(re.findall(r"\bfmla\s+v\d+\.4s", tile.group(1))) >= 8
