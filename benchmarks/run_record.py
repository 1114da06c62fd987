"""What every benchmark's JSON records besides its rows: the machine the figures came from."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import torch


def machine() -> dict:
    info = {"machine": platform.machine(), "processor": _cpu_name(), "python":
            platform.python_version(), "torch": torch.__version__,
            "cpu_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


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
