"""Every C source compiled on first use ships in the package: an installed server without
them would quietly fall back to its slower paths."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_c_source_is_package_data():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]
    sources = [path for top in ("models", "training", "service", "loadtest", "benchmarks")
               for path in (ROOT / top).glob("**/csrc/*") if path.suffix in (".c", ".h")]
    assert sources
    for path in sources:
        relative = path.relative_to(ROOT)
        package = next(".".join(relative.parts[:i]) for i in range(len(relative.parts) - 1, 0, -1)
                       if ".".join(relative.parts[:i]) in data)
        inside = "/".join(relative.parts[len(package.split(".")):])
        assert any(fnmatch.fnmatch(inside, pattern) for pattern in data[package]), relative
