"""The C grouped-product kernels (models/skip/csrc/block_kernels.c), compiled on first use.

At a block's handful of rows (batch 64 at 10 %: ~6 rows per block), a BLAS call spends much of
its time packing the block's weight into its own layout before multiplying. These kernels take
weights packed once, at load (`Panels`: panels of 8 to 32 columns, each contiguous),
and run register-blocked micro-kernels over each block's pairs in row groups of up to six
(eight in the AVX-512 set), reading input rows by example index. A reader narrower than the
panels (a class read-out) takes its weights transposed instead, one dot product per (pair,
column).

The micro-kernels are compiled for every instruction set the compiler targets (AVX-512, AVX2
with FMA, and a portable copy in 16-byte vectors: SSE2 on x86-64, NEON on ARM), and the best one
the CPU runs is chosen when the library loads; SPARSEGATE_KERNEL_SET=generic|avx2|avx512 asks for
another (refused, with the sets there are, where the CPU cannot run it). Every set computes the
same products up to float summation order. On ARM (aarch64) the portable copy's multiply-adds
compile to NEON's fused `fmla` on four floats; tests/models/test_kernels_in_c.py builds it for
aarch64 and runs its products against a scalar reference under qemu (correctness only: its
speed there is unmeasured, and its row groups are sized for x86's 16 vector registers).

A block's first row group prefetches ahead in its panels as it streams them; for groups of one
row whether that pays depends on the CPU (without, such a group reads its panels one after
another, a single stream for the hardware's prefetchers), and so does how a gated layer
reading a gated layer's output (`tiles_from_blocks`) prefetches the next weight tile it will
read (not at all, into every cache level, or into L2 only), so `load()` times each way
(csrc/prefetch_probes.h) and keeps the fastest; SPARSEGATE_ONE_ROW_PREFETCH=off|on and
SPARSEGATE_TILE_PREFETCH=off|l1|l2 ask for one.

Panels hold float32 or bfloat16 weights (`PRECISIONS`): in bfloat16 each weight is the upper
half of its float32 (rounded to nearest even when packed), widened back as it is loaded, so a
product reads half the bytes and sums in float32. Packing a bfloat16-exact float32 weight (one
an artifact stored in bfloat16) in bfloat16 loses nothing.

The library is compiled at `-O3` on first use (`models.native_build`: the system C compiler, a
cache folder, ctypes). Where no compiler is found or the build fails, `load()` returns None and
the caller uses numpy; SPARSEGATE_NATIVE=0 forces that.
"""

from __future__ import annotations

import ctypes
import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import block_weights, native_build

SOURCES = tuple(Path(__file__).with_name("csrc") / name
                for name in ("block_kernels.c", "block_kernels_isa.h", "thread_pool.h",
                             "lone_forward.h", "batch_forward.h", "prefetch_probes.h",
                             "read_through.h"))
SOURCE = SOURCES[0]
# -fno-trapping-math: a comparison may run on every lane, so loops with selects vectorize
# (lone_tanh in lone_forward.h); no result changes.
FLAGS = ("-O3", "-fno-trapping-math", "-ffp-contract=fast", "-funroll-loops", "-shared", "-fPIC",
         "-pthread")
LIBRARIES = ("-lm",)  # after the source: tanhf in a lone example's forward (lone_forward.h)
TILE = 64  # column counts the kernels take are multiples of this (COLUMNS in the source)
# The instruction sets, by the numbers the library uses.
KERNEL_SETS = ("generic", "avx2", "avx512")
# The weight precisions panels hold (their order is the library's numbering), and their numpy
# storage.
PRECISIONS = block_weights.PRECISIONS
_STORAGE = {"float32": np.dtype(np.float32), "bfloat16": np.dtype(np.uint16)}


def to_bfloat16_bits(weights: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits (uint16), rounded to nearest even (torch's rounding)."""
    import torch

    tensor = torch.from_numpy(np.ascontiguousarray(weights, dtype=np.float32))
    return tensor.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)


def from_bfloat16_bits(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bits (uint16) -> float32, exactly."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


@dataclass(frozen=True)
class Panels:
    """A stack of K matrices (K, R, C) packed for the kernels: (K, C / W, R, W) for the chosen
    instruction set's panel width W, so each row of a panel is contiguous, and so is the panel;
    in float32, or in bfloat16 (stored as its uint16 bits). Built once, when a model is
    loaded."""

    array: np.ndarray  # (K, C / width, R, width) float32 or uint16, C-contiguous
    shape: tuple[int, int, int]  # (K, R, C): the matrices it holds
    width: int
    precision: str = "float32"

    @classmethod
    def pack(cls, weights: np.ndarray, width: int, precision: str = "float32") -> Panels:
        if weights.ndim != 3 or not supports(weights.shape[2]) or TILE % width:
            raise ValueError(f"panels need (K, R, C) weights with C a multiple of {TILE}, "
                             f"and a width dividing {TILE}; got shape {weights.shape}, width "
                             f"{width}")
        if precision not in PRECISIONS:
            raise ValueError(f"panel precision must be one of {', '.join(PRECISIONS)}, got "
                             f"{precision!r}")
        k, r, c = weights.shape
        array = np.asarray(weights, dtype=np.float32).reshape(k, r, c // width, width)
        array = np.ascontiguousarray(array.transpose(0, 2, 1, 3))
        if precision == "bfloat16":
            array = to_bfloat16_bits(array)
        return cls(array, (k, r, c), width, precision)

    def unpack(self) -> np.ndarray:
        """The (K, R, C) stack these panels hold, in float32 (a view where they are float32)."""
        k, r, c = self.shape
        array = (self.array if self.precision == "float32"
                 else from_bfloat16_bits(self.array))
        return array.transpose(0, 2, 1, 3).reshape(k, r, c)


@dataclass(frozen=True)
class PrefetchSetting:
    """One of the kernels' settings of how they prefetch, chosen when the library loads
    (csrc/prefetch_probes.h): the library's setter, getter and choosing function, the variable
    that asks for one way, and the ways' names, in the library's order."""

    setter: str
    getter: str
    chooser: str
    variable: str
    ways: tuple[str, ...]


PREFETCH_SETTINGS = {
    # A row group of one row streaming a block's panels: prefetching ahead, or panel by panel.
    "one_row": PrefetchSetting("set_one_row_prefetch", "one_row_prefetch",
                               "choose_one_row_prefetch", "SPARSEGATE_ONE_ROW_PREFETCH",
                               ("off", "on")),
    # `tiles_from_blocks`' next weight tile: not prefetched, into every level, into L2 only.
    "tile": PrefetchSetting("set_tile_prefetch", "tile_prefetch", "choose_tile_prefetch",
                            "SPARSEGATE_TILE_PREFETCH", ("off", "l1", "l2")),
}
# The most ways a setting has: the probes' medians the library writes (prefetch_probes.h).
PROBE_WAYS_MAX = max(len(setting.ways) for setting in PREFETCH_SETTINGS.values())


class NativeKernels:
    def __init__(self, library: ctypes.CDLL) -> None:
        pointer, size = ctypes.c_void_p, ctypes.c_int64
        self._rows = library.rows_times_blocks
        self._rows.argtypes = [ctypes.c_int, pointer, size, pointer, pointer, size, pointer, size,
                               pointer]
        self._rows.restype = None
        self._accumulate = library.accumulate_blocks_times_rows
        self._accumulate.argtypes = [ctypes.c_int, pointer, size, pointer, pointer, size,
                                     pointer, size, pointer]
        self._accumulate.restype = None
        self._narrow = library.accumulate_narrow
        self._narrow.argtypes = [pointer, size, pointer, pointer, size, pointer, size, pointer]
        self._narrow.restype = None
        self._tiles = library.tiles_from_blocks
        self._tiles.argtypes = [ctypes.c_int, pointer, size, pointer, size, pointer, pointer,
                                size, pointer, size, pointer]
        self._tiles.restype = None
        self._threaded = library.grouped_products_threaded
        self._threaded.argtypes = [ctypes.c_int, ctypes.c_int, pointer, size, pointer, pointer,
                                   size, pointer, size, pointer, size, pointer, size]
        self._threaded.restype = None
        self._nudge = library.pool_nudge
        self._nudge.argtypes = []
        self._nudge.restype = None
        self._keep_awake = library.pool_keep_awake
        self._keep_awake.argtypes = [ctypes.c_int64]
        self._keep_awake.restype = None
        self._sleeping = library.pool_sleeping_workers
        self._sleeping.restype = ctypes.c_int
        self._available = library.kernel_sets_available
        self._available.restype = ctypes.c_int
        self._choose = library.choose_kernel_set
        self._choose.argtypes = [ctypes.c_int]
        self._choose.restype = ctypes.c_int
        self._panel_width = library.kernel_panel_width
        self._panel_width.argtypes = [ctypes.c_int]
        self._panel_width.restype = ctypes.c_int64
        # A lone example's whole forward (lone_forward.h), which models.skip.lone_program runs:
        # (stages, count, x, logits, counts, gates, threads, threads_from) -> 0, or -1.
        self.lone_forward = library.lone_forward
        self.lone_forward.argtypes = [pointer, size, pointer, pointer, pointer, pointer, size,
                                      size]
        self.lone_forward.restype = size
        # A batch's whole forward (batch_forward.h), which models.skip.batch_program runs:
        # (stages, count, B, x, logits, counts, gates, threads, threads_from, stop_all_on)
        # -> 0, the stage it stopped at + 1, or -1.
        self.batch_forward = library.batch_forward
        self.batch_forward.argtypes = [pointer, size, size, pointer, pointer, pointer, pointer,
                                       size, size, size]
        self.batch_forward.restype = size
        self._read_through = library.read_through
        self._read_through.argtypes = [pointer, size, size, size]
        self._read_through.restype = ctypes.c_uint64
        self._chosen = library.kernel_set_chosen
        self._chosen.restype = ctypes.c_int
        self._prefetch_functions = {}
        for name, setting in PREFETCH_SETTINGS.items():
            functions = (getattr(library, setting.setter), getattr(library, setting.getter),
                         getattr(library, setting.chooser))
            functions[0].argtypes = [ctypes.c_int]
            functions[2].argtypes = [ctypes.POINTER(ctypes.c_double)]
            for function in functions:
                function.restype = ctypes.c_int
            self._prefetch_functions[name] = functions
        # What each setting's probe measured (ms per way), None where its variable asked or it
        # has not run.
        self.probes: dict[str, dict[str, float] | None] = dict.fromkeys(PREFETCH_SETTINGS)

    @property
    def kernel_set(self) -> str:
        """The instruction set in use. The library holds it, once per process: every
        `NativeKernels` over it sees the same."""
        return KERNEL_SETS[self._chosen()]

    @property
    def panel_width(self) -> int:
        """The width of the weight panels the chosen set reads (`Panels.pack`)."""
        return int(self._panel_width(self._chosen()))

    def pack(self, weights: np.ndarray, precision: str = "float32") -> Panels:
        """(K, R, C) weights packed for the chosen set, in `precision` (see `PRECISIONS`)."""
        return Panels.pack(weights, self.panel_width, precision)

    def _panels(self, weights: Panels | np.ndarray) -> Panels:
        if isinstance(weights, Panels):
            return (weights if weights.width == self.panel_width
                    else self.pack(weights.unpack(), weights.precision))
        return self.pack(weights)

    @property
    def kernel_sets(self) -> tuple[str, ...]:
        """The instruction sets this CPU runs, best last."""
        bits = self._available()
        return tuple(name for i, name in enumerate(KERNEL_SETS) if bits & (1 << i))

    def choose(self, name: str) -> None:
        """Run every product with instruction set `name` from now on (for this process)."""
        if name not in KERNEL_SETS or self._choose(KERNEL_SETS.index(name)) < 0:
            raise ValueError(f"kernel set {name!r} cannot run on this CPU; it runs "
                             f"{', '.join(self.kernel_sets)}")

    def prefetch(self, setting: str) -> str:
        """The way the kernels prefetch in `setting` (a key of `PREFETCH_SETTINGS`, its
        `ways`): "one_row", a row group of one row streaming a block's panels; "tile",
        `tiles_from_blocks`' next weight tile (csrc/prefetch_probes.h). The library holds it,
        once per process."""
        return PREFETCH_SETTINGS[setting].ways[self._prefetch_functions[setting][1]()]

    def set_prefetch(self, setting: str, way: str) -> None:
        """Have the kernels prefetch `way` in `setting` from now on (for this process). Every
        way computes the same products."""
        ways = PREFETCH_SETTINGS[setting].ways
        if way not in ways:
            raise ValueError(f"{setting} prefetching is one of {', '.join(ways)}; got {way!r}")
        self._prefetch_functions[setting][0](ways.index(way))

    def choose_prefetch(self, setting: str) -> str:
        """Set `prefetch(setting)` as its variable asks or, unset or `measure`, as measured on
        this CPU (`probes[setting]` then holds each way's time); returns the way."""
        spec = PREFETCH_SETTINGS[setting]
        medians = (ctypes.c_double * PROBE_WAYS_MAX)()
        chosen = self._prefetch_functions[setting][2](medians)
        if chosen < 0:
            raise ValueError(f"{spec.variable} must be {', '.join(spec.ways)} or measure; got "
                             f"{os.environ.get(spec.variable)!r}")
        self.probes[setting] = (dict(zip(spec.ways, medians, strict=False))
                                if medians[0] >= 0 else None)
        return spec.ways[chosen]

    def nudge(self) -> None:
        """Send the thread pool's sleeping workers to spin a while (see `pool_nudge` in
        csrc/thread_pool.h): before a forward that will split its products, so the workers
        are awake when the first product is split."""
        self._nudge()

    def keep_awake(self, seconds: float) -> None:
        """Keep the pool's idle workers spinning for the next `seconds` (waking sleeping
        ones), or, with 0, no longer than their usual short spin after a product (see
        `pool_keep_awake` in csrc/thread_pool.h)."""
        self._keep_awake(int(seconds * 1e9))

    def sleeping_workers(self) -> int:
        """The pool's workers asleep at this moment (neither spinning nor working)."""
        return self._sleeping()

    def read_through(self, array: np.ndarray, threads: int = 1, prefetch: bool = True) -> int:
        """Read every byte of `array` (C-contiguous, a multiple of 8 bytes) on `threads`
        threads, each a contiguous share, as the products stream their panels, and nothing
        else; returns the XOR of its 8-byte words. With `prefetch`, software prefetches run
        ahead as in the products; without, the hardware's alone. What reading weights alone
        costs, the floor under a product that streams them (`benchmarks.weight_reads`)."""
        if not array.flags.c_contiguous or array.nbytes % 8:
            raise ValueError("read_through needs a C-contiguous array of a multiple of 8 bytes")
        return int(self._read_through(array.ctypes.data, array.nbytes, threads, int(prefetch)))

    def rows_times_blocks(self, x: np.ndarray, examples: np.ndarray,
                          weights: Panels | np.ndarray, spans: np.ndarray, out: np.ndarray,
                          threads: int = 1) -> np.ndarray:
        """out[p] = x[examples[p]] @ weights[block]; x (B, D), weights (K, D, S) (packed or
        not), spans (G, 3) int64 (block, start, end), out (P, S); all C-contiguous. `threads`
        > 1 splits the spans over that many threads inside C (ctypes releases the GIL)."""
        return self._launch(0, self._rows, x, examples, self._panels(weights), spans, out, threads)

    def accumulate_blocks_times_rows(self, values: np.ndarray, examples: np.ndarray,
                                     weights: Panels | np.ndarray, spans: np.ndarray,
                                     out: np.ndarray, threads: int = 1) -> np.ndarray:
        """out[examples[p]] += values[p] @ weights[block]; values (P, S), weights (K, S, N)
        (packed or not), out (B, N). `threads` > 1 splits the output columns over that many
        threads."""
        return self._launch(1, self._accumulate, values, examples, self._panels(weights), spans,
                            out, threads)

    def accumulate_narrow(self, values: np.ndarray, examples: np.ndarray, columns: np.ndarray,
                          spans: np.ndarray, out: np.ndarray) -> np.ndarray:
        """out[examples[p]] += values[p] @ columns[block].T for a reader of any width (a class
        read-out narrower than the panels): values (P, S), S a multiple of 64; columns (K, N,
        S), each output column's weights contiguous; out (B, N). On the calling thread."""
        for array in (values, columns, out):
            if array.dtype != np.float32 or not array.flags.c_contiguous:
                raise ValueError("native kernels need C-contiguous float32 arrays")
        for array in (examples, spans):
            if array.dtype != np.int64 or not array.flags.c_contiguous:
                raise ValueError("native kernels need C-contiguous int64 indices")
        if (values.ndim != 2 or columns.ndim != 3 or out.ndim != 2 or not supports(values.shape[1])
                or columns.shape[1:] != (out.shape[1], values.shape[1])):
            raise ValueError(f"accumulate_narrow needs values (P, S) with S a multiple of {TILE}, "
                             f"columns (K, N, S) and out (B, N); got {values.shape}, "
                             f"{columns.shape}, {out.shape}")
        self._narrow(values.ctypes.data, values.shape[1], examples.ctypes.data,
                     columns.ctypes.data, out.shape[1], spans.ctypes.data, spans.shape[0],
                     out.ctypes.data)
        return out

    def tiles_from_blocks(self, x: np.ndarray, reads: np.ndarray, examples: np.ndarray,
                          weights: Panels | np.ndarray, spans: np.ndarray, out: np.ndarray,
                          threads: int = 1) -> np.ndarray:
        """out[p] = sum over input blocks j that examples[p] reads (reads[e, j] != 0) of
        x[e, block j] @ weights[block][rows of block j]: a gated layer reading only the input
        blocks its previous gated layer computed. x (B, J * S_in), reads (B, J) uint8,
        weights (K, J * S_in, S) (packed or not), spans (G, 3), out (P, S)."""
        panels = self._panels(weights)
        _check(x, panels, out, examples, spans)
        if reads.dtype != np.uint8 or not reads.flags.c_contiguous or reads.ndim != 2 \
                or reads.shape[0] != x.shape[0] or x.shape[1] % reads.shape[1]:
            raise ValueError("reads must be a C-contiguous (B, J) uint8 array dividing x's "
                             "columns into J blocks")
        blocks = reads.shape[1]
        precision = PRECISIONS.index(panels.precision)
        args = (x.ctypes.data, x.shape[1] // blocks, reads.ctypes.data, blocks,
                examples.ctypes.data, panels.array.ctypes.data, panels.shape[2],
                spans.ctypes.data, spans.shape[0], out.ctypes.data)
        if threads > 1:
            self._threaded(2, precision, args[0], args[1], args[4], args[5], args[6], args[7],
                           args[8], args[9], threads, args[2], args[3])
        else:
            self._tiles(precision, *args)
        return out

    def _launch(self, kind: int, single, rows: np.ndarray, examples: np.ndarray,
                weights: Panels, spans: np.ndarray, out: np.ndarray, threads: int
                ) -> np.ndarray:
        """Check the arrays, then run kernel `kind` on this thread or split over `threads`."""
        _check(rows, weights, out, examples, spans)
        precision = PRECISIONS.index(weights.precision)
        args = (rows.ctypes.data, rows.shape[1], examples.ctypes.data, weights.array.ctypes.data,
                weights.shape[2], spans.ctypes.data, spans.shape[0], out.ctypes.data)
        if threads > 1:
            self._threaded(kind, precision, *args, threads, None, 0)
        else:
            single(precision, *args)
        return out


def _check(rows: np.ndarray, weights: Panels, out: np.ndarray, *indices: np.ndarray) -> None:
    """The kernels read raw pointers: refuse anything but C-contiguous arrays of their types,
    and shapes that disagree (a wrong shape would read past an array's end)."""
    for array in (rows, out):
        if array.dtype != np.float32 or not array.flags.c_contiguous:
            raise ValueError("native kernels need C-contiguous float32 arrays")
    if (weights.precision not in PRECISIONS or weights.array.dtype != _STORAGE[weights.precision]
            or not weights.array.flags.c_contiguous):
        raise ValueError(f"native kernels need C-contiguous panels stored as their precision "
                         f"says; got {weights.precision!r} panels of {weights.array.dtype}")
    for array in indices:
        if array.dtype != np.int64 or not array.flags.c_contiguous:
            raise ValueError("native kernels need C-contiguous int64 indices")
    if rows.ndim != 2 or out.ndim != 2 or out.shape[1] % TILE:
        raise ValueError(f"native kernels need 2-D inputs and outputs whose columns are a "
                         f"multiple of {TILE}")


def supports(columns: int) -> bool:
    return columns > 0 and columns % TILE == 0


@functools.cache
def load() -> NativeKernels | None:
    """The compiled kernels with the best instruction set this CPU runs (or the one
    SPARSEGATE_KERNEL_SET names), prefetching in each of `PREFETCH_SETTINGS` as measured on
    this CPU (or as its variable asks), or None (no compiler, a failed build, or
    SPARSEGATE_NATIVE=0)."""
    library = native_build.compiled("block_kernels", SOURCES, FLAGS, LIBRARIES)
    if library is None:
        return None
    kernels = NativeKernels(library)
    kernels.choose(os.environ.get("SPARSEGATE_KERNEL_SET") or kernels.kernel_sets[-1])
    for setting in PREFETCH_SETTINGS:
        kernels.choose_prefetch(setting)
    return kernels
