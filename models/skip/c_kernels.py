"""The C grouped-product kernels (models/skip/csrc/block_kernels.c), compiled on first use.

At a block's handful of rows (batch 64 at 10 %: ~6 rows per block), a BLAS call spends much of
its time packing the block's weight into its own layout before multiplying; these kernels
stream the weight once instead, keeping the partial sums in vector registers, and read input
rows by example index. Measured here (`python -m benchmarks.skip`, and per kernel against
numpy's OpenBLAS): the consumer product (inner dimension 64) ran ~1.6x faster, the gated
layer's product (inner dimension 1024) as fast at batch 64 and ~1.8x faster at batch 256.

The library is compiled with the system C compiler (`cc`, or $CC) at `-O3 -march=native` into
a cache folder ($SPARSEGATE_CACHE, default ~/.cache/sparsegate), keyed by the source's hash,
the flags and the CPU's features, and loaded through ctypes (standard library). Where no
compiler is found or the build fails, `load()` returns None and the caller uses numpy;
SPARSEGATE_NATIVE=0 forces that.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

SOURCE = Path(__file__).with_name("csrc") / "block_kernels.c"
FLAGS = ("-O3", "-march=native", "-ffp-contract=fast", "-funroll-loops", "-shared", "-fPIC",
         "-pthread")
TILE = 64  # the kernels' column tile (T in the source): column counts must be multiples


class NativeKernels:
    def __init__(self, library: ctypes.CDLL) -> None:
        pointer, size = ctypes.c_void_p, ctypes.c_int64
        self._rows = library.rows_times_blocks
        self._rows.argtypes = [pointer, size, pointer, pointer, size, pointer, size, pointer]
        self._rows.restype = None
        self._accumulate = library.accumulate_blocks_times_rows
        self._accumulate.argtypes = [pointer, size, pointer, pointer, size, pointer, size,
                                     pointer]
        self._accumulate.restype = None
        self._tiles = library.tiles_from_blocks
        self._tiles.argtypes = [pointer, size, pointer, size, pointer, pointer, size, pointer,
                                size, pointer]
        self._tiles.restype = None
        self._threaded = library.grouped_products_threaded
        self._threaded.argtypes = [ctypes.c_int, pointer, size, pointer, pointer, size, pointer,
                                   size, pointer, size, pointer, size]
        self._threaded.restype = None

    def rows_times_blocks(self, x: np.ndarray, examples: np.ndarray, weights: np.ndarray,
                          spans: np.ndarray, out: np.ndarray, threads: int = 1) -> np.ndarray:
        """out[p] = x[examples[p]] @ weights[block]; x (B, D), weights (K, D, S), spans (G, 3)
        int64 (block, start, end), out (P, S); all C-contiguous. `threads` > 1 splits the
        spans over that many threads inside C (the GIL is released by ctypes)."""
        return self._launch(0, self._rows, x, examples, weights, spans, out, threads)

    def accumulate_blocks_times_rows(self, values: np.ndarray, examples: np.ndarray,
                                     weights: np.ndarray, spans: np.ndarray, out: np.ndarray,
                                     threads: int = 1) -> np.ndarray:
        """out[examples[p]] += values[p] @ weights[block]; values (P, S), weights (K, S, N),
        out (B, N). `threads` > 1 splits the output columns over that many threads."""
        return self._launch(1, self._accumulate, values, examples, weights, spans, out, threads)

    def tiles_from_blocks(self, x: np.ndarray, reads: np.ndarray, examples: np.ndarray,
                          weights: np.ndarray, spans: np.ndarray, out: np.ndarray,
                          threads: int = 1) -> np.ndarray:
        """out[p] = sum over input blocks j that examples[p] reads (reads[e, j] != 0) of
        x[e, block j] @ weights[block][rows of block j]: a gated layer reading only the input
        blocks its previous gated layer computed. x (B, J * S_in), reads (B, J) uint8,
        weights (K, J * S_in, S), spans (G, 3), out (P, S)."""
        _check(x, weights, out, examples, spans)
        if reads.dtype != np.uint8 or not reads.flags.c_contiguous or reads.ndim != 2 \
                or reads.shape[0] != x.shape[0] or x.shape[1] % reads.shape[1]:
            raise ValueError("reads must be a C-contiguous (B, J) uint8 array dividing x's "
                             "columns into J blocks")
        blocks = reads.shape[1]
        args = (x.ctypes.data, x.shape[1] // blocks, reads.ctypes.data, blocks,
                examples.ctypes.data, weights.ctypes.data, weights.shape[2], spans.ctypes.data,
                spans.shape[0], out.ctypes.data)
        if threads > 1:
            self._threaded(2, args[0], args[1], args[4], args[5], args[6], args[7], args[8],
                           args[9], threads, args[2], args[3])
        else:
            self._tiles(*args)
        return out

    def _launch(self, kind: int, single, rows: np.ndarray, examples: np.ndarray,
                weights: np.ndarray, spans: np.ndarray, out: np.ndarray, threads: int
                ) -> np.ndarray:
        """Check the arrays, then run kernel `kind` on this thread or split over `threads`."""
        _check(rows, weights, out, examples, spans)
        args = (rows.ctypes.data, rows.shape[1], examples.ctypes.data, weights.ctypes.data,
                weights.shape[2], spans.ctypes.data, spans.shape[0], out.ctypes.data)
        if threads > 1:
            self._threaded(kind, *args, threads, None, 0)
        else:
            single(*args)
        return out


def _check(*arrays: np.ndarray) -> None:
    """The kernels read raw pointers: refuse anything but C-contiguous arrays of their types."""
    *floats, examples, spans = arrays
    for array in floats:
        if array.dtype != np.float32 or not array.flags.c_contiguous:
            raise ValueError("native kernels need C-contiguous float32 arrays")
    for array in (examples, spans):
        if array.dtype != np.int64 or not array.flags.c_contiguous:
            raise ValueError("native kernels need C-contiguous int64 indices")


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    import platform

    return platform.machine() + platform.processor()


def supports(columns: int) -> bool:
    return columns > 0 and columns % TILE == 0


@functools.cache
def load() -> NativeKernels | None:
    """The compiled kernels, or None (no compiler, a failed build, or SPARSEGATE_NATIVE=0)."""
    if os.environ.get("SPARSEGATE_NATIVE", "1") == "0":
        return None
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not compiler:
        return None
    source = SOURCE.read_bytes()
    # -march=native: a library built on one CPU may not run on another (a shared home folder),
    # so the CPU's feature flags are part of the key.
    key = hashlib.sha256(source + " ".join((compiler, *FLAGS, _cpu_flags())).encode()
                         ).hexdigest()[:16]
    cache = Path(os.environ.get("SPARSEGATE_CACHE", Path.home() / ".cache" / "sparsegate"))
    library = cache / f"block_kernels-{key}.so"
    try:
        if not library.exists():
            cache.mkdir(parents=True, exist_ok=True)
            # Build beside, then rename: concurrent first uses never load a half-written file.
            with tempfile.TemporaryDirectory(dir=cache) as tmp:
                built = Path(tmp) / library.name
                subprocess.run([compiler, *FLAGS, "-o", str(built), str(SOURCE)], check=True,
                               capture_output=True, timeout=120)
                os.replace(built, library)
        return NativeKernels(ctypes.CDLL(str(library)))
    except (OSError, subprocess.SubprocessError):
        return None
