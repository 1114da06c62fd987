"""Matrix products over blocks on the CPU, run by the BLAS that is fastest at their shapes.

The skipping forward runs many small products: a block's few examples (pairs sorted by block,
the way MoE kernels sort tokens by expert) times that block's weight. They go through numpy,
whose wheels bundle OpenBLAS, rather than `torch.mm`, whose CPU build calls MKL: measured on the
AMD EPYC this project runs on (`python -m benchmarks.blas`), MKL ran a (7 x 1024) @ (1024 x 64)
product 2-3x slower and a matrix-vector product at 15 GB/s against OpenBLAS's 26-30 GB/s; MKL
takes slower code paths on non-Intel CPUs. `Tensor.numpy()` is a view of the same memory, so
nothing is copied between the two libraries.

OpenBLAS runs these products on one thread (`use_one_blas_thread`): they are small, and its worker
threads spinning beside torch's OpenMP workers on the same cores made a mixed torch/numpy
forward 3-8x slower than either alone (measured). Large dense products stay with torch. To use
more than one core, the blocks are split into contiguous runs of about equal work, one per
thread, when there is enough work to pay for the hand-off. The products call `np.dot`, which
releases the GIL around its BLAS call whatever the size (np.matmul keeps it for a single 2-D
product), so the threads really run side by side.

Letters: P (example, block) pairs, D input units, K blocks, S units per block, N output units.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .routing import PARALLEL_FROM_MACS


@functools.cache
def _openblas_controllers() -> list:
    import threadpoolctl  # numpy's OpenBLAS is loaded by now; find it once

    return threadpoolctl.ThreadpoolController().select(internal_api="openblas").lib_controllers


def use_one_blas_thread() -> None:
    """Run numpy's OpenBLAS on one thread from now on, for the whole process.

    Not switched back after each forward: raising OpenBLAS's thread count wakes its workers,
    which then spin for a while on the cores torch's next product wants (measured: 0.24 ms
    added to a 3.7 ms batch-8 forward). A process that serves a SkipNetwork leaves numpy's
    BLAS single-threaded; use threadpoolctl's `threadpool_limits` to lift it around other
    numpy work.
    """
    for controller in _openblas_controllers():
        controller.set_num_threads(1)



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


def chunk_spans(spans: list[tuple[int, int, int]], max_pairs: int
                ) -> Iterator[tuple[int, int, list[tuple[int, int, int]]]]:
    """(start, end, spans rebased to start) of consecutive runs of spans holding at most
    `max_pairs` pairs each (a single span larger than that is a run of its own)."""
    run: list[tuple[int, int, int]] = []
    for span in spans:
        if run and span[2] - run[0][1] > max_pairs:
            yield _rebased(run)
            run = []
        run.append(span)
    if run:
        yield _rebased(run)


def _rebased(run: list[tuple[int, int, int]]) -> tuple[int, int, list[tuple[int, int, int]]]:
    first = run[0][1]
    return first, run[-1][2], [(block, a - first, b - first) for block, a, b in run]


def block_spans(blocks: np.ndarray, count: int) -> np.ndarray:
    """(G, 3) int64 (block, start, end): each block's contiguous slice of pairs sorted by
    block, for the G blocks with any; `blocks` (P,) the pairs' blocks, `count` the layer's
    blocks. Built in a few array calls: a Python loop over the blocks cost ~20 us a layer."""
    per_block = np.bincount(blocks, minlength=count)
    present = np.flatnonzero(per_block)
    ends = np.cumsum(per_block)[present]
    return np.stack([present, ends - per_block[present], ends], axis=1)


def _run(work: Callable[[list[tuple[int, int, int]], int], None],
         spans: list[tuple[int, int, int]], macs: int, threads: int) -> None:
    if threads > 1 and len(spans) > 1 and macs >= PARALLEL_FROM_MACS * len(spans):
        _in_parallel(work, spans, threads)
    else:
        work(spans, 0)


def rows_times_blocks(rows: np.ndarray, weights: np.ndarray,
                      spans: list[tuple[int, int, int]], out: np.ndarray,
                      threads: int = 1) -> np.ndarray:
    """out[start:end] = rows[start:end] @ weights[block] for each (block, start, end) span.

    rows (P, R) sorted by block; weights (K, R, C), each block's matrix contiguous; out (P, C),
    C-contiguous. One BLAS call per block present, so only the blocks some pair uses are read;
    the spans write disjoint rows of out, so threads need no locks.
    """
    def work(run: list[tuple[int, int, int]], _: int) -> None:
        for block, start, end in run:
            np.dot(rows[start:end], weights[block], out=out[start:end])

    _run(work, spans, out.size * weights.shape[1], threads)
    return out
