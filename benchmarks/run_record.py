"""What every benchmark's JSON records besides its rows: the machine the figures came from."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import torch


def machine() -> dict:
    cpuinfo = _cpuinfo()
    flags = set(cpuinfo.get("flags", "").split())
    info = {"machine": platform.machine(),
            "processor": cpuinfo.get("model name") or platform.processor(),
            "python": platform.python_version(), "torch": torch.__version__,
            "cpu_threads": torch.get_num_threads(),
            # The same EPYC host has been seen with and without AVX-512, and every CPU figure
            # depends on which.
            "vector_extensions": [f for f in ("avx2", "fma", "avx512f") if f in flags]}
    kernels = _cpu_kernel_set()
    if kernels:
        info["cpu_kernel_set"] = kernels
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields in /proc/cpuinfo ({} where there is none)."""
    fields: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return fields
    for line in text.splitlines():
        if not line.strip():
            break  # the end of the first processor's block
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def _cpu_kernel_set() -> str | None:
    """The instruction set the CPU engine's C kernels run here (None without a compiler)."""
    from models.skip import c_kernels

    kernels = c_kernels.load()
    return kernels.kernel_set if kernels is not None else None


def write_rows(path: Path, rows: list[dict], **extra: object) -> None:
    """{"machine": ..., **extra, "rows": rows} as JSON at `path` (folders made as needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": machine(), **extra, "rows": rows}, indent=1))
