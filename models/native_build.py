"""C sources compiled on first use: the CPU engine's kernels (`models.skip.c_kernels`), their
onnxruntime operators (`models.skip.onnx_ops`) and the server's JSON number reader
(`service.json_native`).

A library is compiled with the system C compiler (`cc`, or $CC) into a cache folder
($SPARSEGATE_CACHE, default ~/.cache/sparsegate), named by the sources' and the command's hash
so an edit or other flags build anew, and loaded through ctypes (standard library) or, for
onnxruntime, by its path (`built`). Where no compiler is found or the build fails, `compiled`
and `built` return None and the caller takes its pure-Python path; SPARSEGATE_NATIVE=0 asks for
that everywhere.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path


def compiler() -> str | None:
    """The C compiler builds use, None where there is none (or SPARSEGATE_NATIVE=0)."""
    if os.environ.get("SPARSEGATE_NATIVE", "1") == "0":
        return None
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")


def built(name: str, sources: Sequence[Path], flags: Sequence[str],
          libraries: Sequence[str] = ()) -> Path | None:
    """The path of the library built from sources[0] (the rest: what it includes, hashed
    alone), or None."""
    cc = compiler()
    if not cc:
        return None
    command = " ".join((cc, *flags, *libraries))
    key = hashlib.sha256(b"".join(path.read_bytes() for path in sources)
                         + command.encode()).hexdigest()[:16]
    cache = Path(os.environ.get("SPARSEGATE_CACHE", Path.home() / ".cache" / "sparsegate"))
    library = cache / f"{name}-{key}.so"
    try:
        if not library.exists():
            cache.mkdir(parents=True, exist_ok=True)
            # Build beside, then rename: concurrent first uses never load a half-written file.
            with tempfile.TemporaryDirectory(dir=cache) as tmp:
                made = Path(tmp) / library.name
                subprocess.run([cc, *flags, "-o", str(made), str(sources[0]), *libraries],
                               check=True, capture_output=True, timeout=120)
                os.replace(made, library)
    except (OSError, subprocess.SubprocessError):
        return None
    return library


def compiled(name: str, sources: Sequence[Path], flags: Sequence[str],
             libraries: Sequence[str] = ()) -> ctypes.CDLL | None:
    """The library built from sources[0] (see `built`), loaded, or None."""
    library = built(name, sources, flags, libraries)
    if library is None:
        return None
    try:
        return ctypes.CDLL(str(library))
    except OSError:
        return None
