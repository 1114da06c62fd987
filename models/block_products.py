"""Matrix products over blocks on the CPU, run by the BLAS that is fastest at their shapes.

The skipping forward runs many small products: a block's few examples (pairs sorted by block,
the way MoE kernels sort tokens by expert) times that block's weight. They go through numpy,
whose wheels bundle OpenBLAS, rather than `torch.mm`, whose CPU build calls MKL: measured on the
AMD EPYC this project runs on (`python -m benchmarks.blas`), MKL ran a (7 x 1024) @ (1024 x 64)
product 2-3x slower and a matrix-vector product at 15 GB/s against OpenBLAS's 26-30 GB/s; MKL
takes slower code paths on non-Intel CPUs. `Tensor.numpy()` is a view of the same memory, so
nothing is copied between the two libraries.

OpenBLAS runs these products on one thread (`one_blas_thread`): they are small, and its worker
threads spinning beside torch's OpenMP workers on the same cores made a mixed torch/numpy
forward 3-8x slower than either alone (measured). Large dense products stay with torch. To use
more than one core, the blocks are split into contiguous runs of about equal work, one per
thread (numpy releases the GIL inside BLAS), when there is enough work to pay for the hand-off.

Letters: P (example, block) pairs, D input units, K blocks, S units per block, N output units.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np


@functools.cache
def _openblas_controllers() -> list:
    import threadpoolctl  # numpy's OpenBLAS is loaded by now; find it once

    return threadpoolctl.ThreadpoolController().select(internal_api="openblas").lib_controllers


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Run numpy's OpenBLAS on one thread inside the block (a few microseconds to switch)."""
    controllers = _openblas_controllers()
    before = [c.get_num_threads() for c in controllers]
    for c in controllers:
        c.set_num_threads(1)
    try:
        yield
    finally:
        for c, n in zip(controllers, before, strict=True):
            c.set_num_threads(n)


# Multiply-adds below which the grouped products stay on the calling thread: handing work to a
# pool thread costs tens of microseconds.
PARALLEL_FROM_MACS = 2_000_000


@functools.cache
def _pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(workers, thread_name_prefix="sparsegate-blocks")


def split_spans(spans: list[tuple[int, int, int]], parts: int) -> list[list[tuple[int, int, int]]]:
    """Contiguous runs of spans with about equal numbers of pairs, at most `parts` of them."""
    total = spans[-1][2] - spans[0][1] if spans else 0
    runs: list[list[tuple[int, int, int]]] = [[]]
    for span in spans:
        if runs[-1] and len(runs) < parts and span[1] - spans[0][1] >= total * len(runs) / parts:
            runs.append([])
        runs[-1].append(span)
    return [run for run in runs if run]


def _in_parallel(work: Callable[[list[tuple[int, int, int]], int], None],
                 spans: list[tuple[int, int, int]], threads: int) -> None:
    """work(run, index) for each run of spans; run 0 on the calling thread, the rest on the
    pool; returns when all are done (a worker's exception is raised here)."""
    runs = split_spans(spans, threads)
    futures = [_pool(threads - 1).submit(work, run, i) for i, run in enumerate(runs) if i]
    work(runs[0], 0)
    for future in futures:
        future.result()


def block_offsets(counts: list[int]) -> list[tuple[int, int, int]]:
    """(block, start, end) of each block's contiguous slice of the pairs, for blocks with any."""
    spans, start = [], 0
    for block, n in enumerate(counts):
        if n:
            spans.append((block, start, start + n))
            start += n
    return spans


def gathered_rows_times_blocks(x: np.ndarray, examples: np.ndarray, weights: np.ndarray,
                               spans: list[tuple[int, int, int]], out: np.ndarray,
                               threads: int = 1) -> np.ndarray:
    """out[start:end] = x[examples[start:end]] @ weights[block] for each (block, start, end).

    x (B, D); examples (P,) sorted by block; weights (K, D, S), each block's matrix contiguous;
    out (P, S). One BLAS call per block present, so only the blocks some example uses are read;
    each block's rows are gathered just before its product, while they are cache-sized.
    """
    def work(run: list[tuple[int, int, int]], _: int) -> None:
        for block, start, end in run:
            np.matmul(x[examples[start:end]], weights[block], out=out[start:end])

    macs = out.size * weights.shape[1]
    if threads > 1 and len(spans) > 1 and macs >= PARALLEL_FROM_MACS:
        _in_parallel(work, spans, threads)
    else:
        work(spans, 0)
    return out


def accumulate_blocks_times_rows(values: np.ndarray, examples: np.ndarray, weights: np.ndarray,
                                 spans: list[tuple[int, int, int]], out: np.ndarray,
                                 threads: int = 1) -> np.ndarray:
    """out[examples[start:end]] += values[start:end] @ weights[block] for each span.

    values (P, S) pairs sorted by block; weights (K, S, N), each input block's rows contiguous;
    out (B, N). An example appears at most once in a block's span, so the scattered += is exact;
    threads other than the caller's add into their own zeroed (B, N) buffers, summed at the end
    (two blocks of one run may share an example, two runs may too).
    """
    buffers = [out]

    def work(run: list[tuple[int, int, int]], index: int) -> None:
        target = buffers[index]
        for block, start, end in run:
            target[examples[start:end]] += np.matmul(values[start:end], weights[block])

    macs = values.size * weights.shape[2]
    if threads > 1 and len(spans) > 1 and macs >= PARALLEL_FROM_MACS:
        parts = len(split_spans(spans, threads))
        buffers += [np.zeros_like(out) for _ in range(parts - 1)]
        _in_parallel(work, spans, threads)
        for buffer in buffers[1:]:
            out += buffer
    else:
        work(spans, 0)
    return out
