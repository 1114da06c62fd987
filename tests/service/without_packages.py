"""Run a module as if some top-level packages were not installed:

    python tests/service/without_packages.py torch,onnx,training -m service.cli ARGS...

Importing a listed package (or anything under it) raises ModuleNotFoundError, as it would where
the package is absent, so a server started this way shows which backends need what."""

from __future__ import annotations

import importlib.abc
import os
import runpy
import sys


class _Absent(importlib.abc.MetaPathFinder):
    def __init__(self, packages: set[str]) -> None:
        self.packages = packages

    def find_spec(self, name, path, target=None):
        top = name.partition(".")[0]
        if top in self.packages:
            raise ModuleNotFoundError(f"No module named {top!r}", name=top)
        return None


def main() -> None:
    packages, flag, module, *args = sys.argv[1:]
    if flag != "-m":
        raise SystemExit("usage: without_packages.py PACKAGES -m MODULE [ARGS...]")
    sys.meta_path.insert(0, _Absent(set(packages.split(","))))
    sys.path[0] = os.getcwd()  # as `python -m` has it, not this script's folder
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
