"""What every benchmark's JSON records besides its rows: the machine the figures came from."""

from __future__ import annotations

import argparse
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
    info.update(_cpu_kernels())
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


def _cpu_kernels() -> dict:
    """How the CPU engine's C kernels run here: their instruction set, how they prefetch in
    each setting the library chooses (`c_kernels.PREFETCH_SETTINGS`), and each probe's times
    per way where it measured that ({} without a compiler)."""
    from models.skip import c_kernels

    kernels = c_kernels.load()
    if kernels is None:
        return {}
    info = {"cpu_kernel_set": kernels.kernel_set}
    for setting, probe in kernels.probes.items():
        info[f"cpu_{setting}_prefetch"] = kernels.prefetch(setting)
        if probe is not None:
            info[f"cpu_{setting}_probe_ms"] = probe
    return info


def timing_parser(description: str, *, warmup: int, repeats: int) -> argparse.ArgumentParser:
    """A timing benchmark's command line: its description as help, and --json (where to write
    the rows), --warmup, --repeats (with the benchmark's own defaults) and --seed."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--warmup", type=int, default=warmup)
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def write_rows_if_asked(path: Path | None, rows: list[dict], **extra: object) -> None:
    """`write_rows` where a --json path was given, saying where."""
    if path:
        write_rows(path, rows, **extra)
        print(f"wrote {path}")


def write_rows(path: Path, rows: list[dict], **extra: object) -> None:
    """{"machine": ..., **extra, "rows": rows} as JSON at `path` (folders made as needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": machine(), **extra, "rows": rows}, indent=1))
