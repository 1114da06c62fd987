"""Enforce the import directions of design.md ("The four parts and the one way data flows").

Source files are parsed with ``ast``, never imported, so the check needs none of the packages'
dependencies and sees imports nested inside functions too.
"""

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("models", "training", "service", "loadtest", "benchmarks")
STDLIB = frozenset(sys.stdlib_module_names)

# models/ depends on torch alone (plus numpy and safetensors for the artifact, and threadpoolctl,
# which the CPU skip path uses to keep numpy's OpenBLAS on one thread); triton is allowed only
# lazily, on the GPU path, so importing models never requires it.
MODELS_ALLOWED = STDLIB | {"models", "torch", "numpy", "safetensors", "threadpoolctl"}
MODELS_LAZY_ONLY = {"triton", "onnxruntime"}
# The ONNX graph builder imports onnx at its top; it is the only part of models that may, and
# the rest of models imports those modules only inside functions, so `import models` and the
# server's onnxruntime backend never need onnx.
ONNX_GRAPH_MODULES = ("onnx_export", "onnx_graph", "onnx_grouped")

# package -> top-level modules it must never import
FORBIDDEN = {
    "models": {"training", "service", "loadtest", "benchmarks", "fastapi", "pydantic"},
    "training": {"service", "loadtest"},
    "service": {"training", "loadtest"},
    "loadtest": {"models", "training", "service"},
    "benchmarks": {"training", "loadtest"},
}


def import_statements(source: str) -> list[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement of ``source``, each with whether it sits at module top level
    (outside any function)."""
    tree = ast.parse(source)
    in_function: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            in_function.update(id(child) for child in ast.walk(node) if child is not node)
    return [(node, id(node) not in in_function) for node in ast.walk(tree)
            if isinstance(node, ast.Import | ast.ImportFrom)]


def imported_modules(source: str, package: str) -> list[tuple[str, bool]]:
    """Top-level names of every module imported by ``source``, each with whether the import
    statement sits at module top level. Relative imports resolve to ``package``."""
    found = []
    for node, top_level in import_statements(source):
        names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                 else [package if node.level else node.module])
        found += [(name.split(".")[0], top_level) for name in names]
    return found


def graph_modules_imported_at_top(source: str) -> list[str]:
    """The ONNX graph-builder modules that ``source`` imports outside any function."""
    found = []
    for node, top_level in import_statements(source):
        if not top_level:
            continue
        if isinstance(node, ast.ImportFrom):
            names = [node.module or ""] + [f"{node.module or ''}.{a.name}" for a in node.names]
        else:
            names = [alias.name for alias in node.names]
        found += [n for n in names if n.rsplit(".", 1)[-1] in ONNX_GRAPH_MODULES]
    return found


def violations(source: str, package: str, file_name: str = "") -> list[str]:
    """Human-readable breaches of the import rules by one source file of ``package``
    (``file_name``: its name, for the rules that name modules)."""
    problems = []
    graph_module = package == "models" and file_name.removesuffix(".py") in ONNX_GRAPH_MODULES
    if package == "models" and not graph_module:
        problems += [f"models may import {name} only inside functions"
                     for name in graph_modules_imported_at_top(source)]
    for module, top_level in imported_modules(source, package):
        if module in FORBIDDEN[package]:
            problems.append(f"{package} must not import {module}")
        elif graph_module and module == "onnx":
            continue
        elif package == "models" and module in MODELS_LAZY_ONLY:
            if top_level:
                problems.append(f"models may import {module} only inside functions")
        elif package == "models" and module not in MODELS_ALLOWED:
            problems.append(f"models may not depend on {module}")
    return problems


def source_files():
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield pytest.param(package, path, id=str(path.relative_to(ROOT)))


@pytest.mark.parametrize(("package", "path"), list(source_files()))
def test_imports_follow_design(package, path):
    assert violations(path.read_text(encoding="utf-8"), package, path.name) == []


@pytest.mark.parametrize(
    ("package", "source", "expected"),
    [
        ("models", "import service.app", ["models must not import service"]),
        ("models", "from fastapi import FastAPI", ["models must not import fastapi"]),
        ("models", "import scipy", ["models may not depend on scipy"]),
        ("models", "import triton", ["models may import triton only inside functions"]),
        ("models", "def kernel():\n    import triton.language as tl\n", []),
        ("models", "import os, torch, numpy as np\nfrom . import gates\n", []),
        (
            "training",
            "def f():\n    from service import app\n",
            ["training must not import service"],
        ),
        ("service", "from training.loop import train", ["service must not import training"]),
        ("service", "from models import artifact\nimport fastapi", []),
        ("loadtest", "import models", ["loadtest must not import models"]),
        ("loadtest", "from .users import User\nimport locust", []),
        ("benchmarks", "import models.gated\nimport torch", []),
        ("models", "import onnx", ["models may not depend on onnx"]),
        ("models", "import onnxruntime", ["models may import onnxruntime only inside functions"]),
        ("models", "from .onnx_export import export_onnx",
         ["models may import onnx_export only inside functions"]),
        ("models", "from . import onnx_graph",
         ["models may import .onnx_graph only inside functions"]),
        ("models", "def f():\n    from .onnx_export import export_onnx\n", []),
    ],
)
def test_checker_catches_violations(package, source, expected):
    assert violations(source, package) == expected


def test_only_the_graph_builder_may_import_onnx_at_its_top():
    builder = "import onnx\nfrom .onnx_graph import Graph"
    assert violations(builder, "models", "onnx_export.py") == []
    assert violations("import onnx", "models", "cpu.py") == ["models may not depend on onnx"]


def test_checker_sees_every_package():
    # Guard against a layout change silently leaving the walk with nothing to check.
    for package in PACKAGES:
        assert (ROOT / package / "__init__.py").is_file(), package
