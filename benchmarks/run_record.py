"""What every benchmark's JSON records besides its rows: the machine the figures came from."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import torch


def machine() -> dict:
    info = {"machine": platform.machine(), "processor": _cpu_name(), "python":
            platform.python_version(), "torch": torch.__version__,
            "cpu_threads": torch.get_num_threads(), "vector_extensions": _vector_extensions()}
    kernels = _cpu_kernel_set()
    if kernels:
        info["cpu_kernel_set"] = kernels
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def _vector_extensions() -> list[str]:
    """The CPU's wide vector extensions: the same EPYC host has been seen with and without
    AVX-512, and every CPU figure depends on which."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return [f for f in ("avx2", "fma", "avx512f") if f in flags]
    except OSError:
        pass
    return []


def _cpu_kernel_set() -> str | None:
    """The instruction set the CPU engine's C kernels run here (None without a compiler)."""
    from models.skip import c_kernels

    kernels = c_kernels.load()
    return kernels.kernel_set if kernels is not None else None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def write_rows(path: Path, rows: list[dict], **extra: object) -> None:
    """{"machine": ..., **extra, "rows": rows} as JSON at `path` (folders made as needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": machine(), **extra, "rows": rows}, indent=1))
