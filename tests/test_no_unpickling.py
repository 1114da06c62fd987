"""No code in the project can unpickle: loading pickle data runs whatever code the data names,
so a model file, checkpoint or request could run code on the server (design.md: "no pickle is
ever loaded"). An AST scan of every Python file of the packages refuses:

- importing pickle and its kin (cPickle, _pickle, cloudpickle, dill, joblib, shelve, marshal);
- torch.load without weights_only=True (and torch.serialization.load, torch.hub.load);
- torch.jit.load (TorchScript archives hold pickles);
- numpy.load with allow_pickle set to anything but False;
- yaml.load / load_all without Loader=SafeLoader (or CSafeLoader), and yaml.unsafe_load;
- pandas.read_pickle.

Names are resolved through the file's imports (`import numpy as np`, `from torch import load`),
so `tl.load` of Triton or a module's own `load()` are not mistaken for these.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("models", "training", "service", "loadtest", "benchmarks", "scripts")
PICKLERS = {"pickle", "cPickle", "_pickle", "cloudpickle", "dill", "joblib", "shelve", "marshal"}
ALWAYS_UNSAFE = {"torch.jit.load", "yaml.unsafe_load", "yaml.unsafe_load_all",
                 "pandas.read_pickle"}
NEEDS_WEIGHTS_ONLY = {"torch.load", "torch.serialization.load", "torch.hub.load"}
SAFE_YAML_LOADERS = {"yaml.SafeLoader", "yaml.CSafeLoader"}


def _imported_names(tree: ast.AST) -> dict[str, str]:
    """Local name -> the dotted name it stands for, from the file's imports."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    names[alias.asname] = alias.name
                else:  # `import torch.jit` binds `torch`
                    top = alias.name.split(".")[0]
                    names[top] = top
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return names


def _dotted(node: ast.AST, names: dict[str, str]) -> str | None:
    """`np.load` -> "numpy.load" where np is numpy; None for anything not a plain name chain."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(names.get(node.id, node.id))
    return ".".join(reversed(parts))


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_constant(node: ast.expr | None, value: object) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def unpickling(source: str, filename: str = "<source>") -> list[str]:
    """Every way `source` could unpickle, as "file:line: what"."""
    tree = ast.parse(source, filename)
    names = _imported_names(tree)
    found = []

    def report(node: ast.AST, what: str) -> None:
        found.append(f"{filename}:{node.lineno}: {what}")

    for node in ast.walk(tree):
        modules = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules = [node.module]
        for module in modules:
            if module.split(".")[0] in PICKLERS:
                report(node, f"imports {module}")
        if not isinstance(node, ast.Call):
            continue
        function = _dotted(node.func, names)
        if function in ("__import__", "importlib.import_module") and node.args \
                and isinstance(node.args[0], ast.Constant) \
                and str(node.args[0].value).split(".")[0] in PICKLERS:
            report(node, f"imports {node.args[0].value} dynamically")
        if function in ALWAYS_UNSAFE:
            report(node, f"calls {function}")
        elif function in NEEDS_WEIGHTS_ONLY:
            if not _is_constant(_keyword(node, "weights_only"), True):
                report(node, f"calls {function} without weights_only=True")
        elif function == "numpy.load":
            allow = _keyword(node, "allow_pickle")
            if allow is not None and not _is_constant(allow, False):
                report(node, "calls numpy.load with allow_pickle")
        elif function in ("yaml.load", "yaml.load_all"):
            loader = _keyword(node, "Loader") or (node.args[1] if len(node.args) > 1 else None)
            if loader is None or _dotted(loader, names) not in SAFE_YAML_LOADERS:
                report(node, f"calls {function} without Loader=yaml.SafeLoader")
    return found


def project_files() -> list[Path]:
    files = []
    for package in PACKAGES:
        files += sorted((ROOT / package).rglob("*.py"))
    return files


def test_no_project_file_can_unpickle():
    files = project_files()
    scanned = {path.relative_to(ROOT).parts[0] for path in files}
    assert {"models", "training", "service", "loadtest", "benchmarks"} <= scanned
    found = [hit for path in files
             for hit in unpickling(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))]
    assert found == []


# The scanner itself: each snippet must be caught, or must not be.
UNSAFE = [
    "import torch\ntorch.load(f)",
    "import torch\ntorch.load(f, weights_only=False)",
    "import torch as t\nt.load(f, map_location='cpu')",
    "from torch import load\nload(f)",
    "import torch.serialization\ntorch.serialization.load(f)",
    "import torch\ntorch.jit.load(path)",
    "from torch import jit\njit.load(path)",
    "import torch\ntorch.hub.load('repo', 'model')",
    "import numpy as np\nnp.load(f, allow_pickle=True)",
    "import numpy\nnumpy.load(f, allow_pickle=flag)",
    "from numpy import load\nload(f, allow_pickle=True)",
    "import pickle",
    "import cPickle",
    "import _pickle",
    "from pickle import loads",
    "import dill",
    "import joblib",
    "import cloudpickle",
    "import shelve",
    "import importlib\nimportlib.import_module('pickle')",
    "__import__('dill')",
    "import yaml\nyaml.load(text)",
    "import yaml\nyaml.load(text, Loader=yaml.Loader)",
    "import yaml\nyaml.load(text, yaml.FullLoader)",
    "import yaml\nyaml.unsafe_load(text)",
    "import pandas as pd\npd.read_pickle(path)",
]
SAFE = [
    "import torch\ntorch.load(f, weights_only=True)",
    "import numpy as np\nnp.load(f)",
    "import numpy as np\nnp.load(f, allow_pickle=False)",
    "import yaml\nyaml.load(text, Loader=yaml.SafeLoader)",
    "import yaml\nyaml.safe_load(text)",
    "import json\njson.loads(text)",
    "import safetensors.torch\nsafetensors.torch.load(data)",
    "import triton.language as tl\ntl.load(pointer)",
    "from . import native_kernels\nnative_kernels.load()",
    "def load(): pass\nload()",
]


@pytest.mark.parametrize("snippet", UNSAFE)
def test_the_scanner_catches(snippet):
    assert unpickling(snippet) != []


@pytest.mark.parametrize("snippet", SAFE)
def test_the_scanner_lets_through(snippet):
    assert unpickling(snippet) == []
