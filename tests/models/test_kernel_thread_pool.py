"""The C kernels' thread pool (models/skip/csrc/thread_pool.h): products split over its
workers equal the one-thread products bit for bit (each output element is summed by one thread
in the same order), whoever calls, however often, after its workers slept, from several
threads at once, and in a forked child. Skipped where no C compiler builds the kernels."""

import multiprocessing
import os
import threading
import time

import numpy as np
import pytest

from models.skip import c_kernels as native_kernels

from .polling import eventually

kernels = native_kernels.load()
pytestmark = pytest.mark.skipif(kernels is None, reason="no C compiler built the kernels")


def problem(seed: int, batch: int = 9, blocks: int = 12, d: int = 80, s: int = 64,
            n: int = 192):
    """A batch's pairs (every example on in about half of the blocks) and both layers' weights."""
    rng = np.random.default_rng(seed)
    on = rng.random((batch, blocks)) < 0.5
    block_of, examples = np.nonzero(on.T)
    counts = np.bincount(block_of, minlength=blocks)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    spans = np.array([(b, starts[b], starts[b] + counts[b]) for b in range(blocks) if counts[b]],
                     dtype=np.int64).reshape(-1, 3)
    return (rng.standard_normal((batch, d), dtype=np.float32), examples.astype(np.int64),
            kernels.pack(rng.standard_normal((blocks, d, s), dtype=np.float32)),
            kernels.pack(rng.standard_normal((blocks, s, n), dtype=np.float32)), spans)


def forward(x, examples, w_in, w_out, spans, threads: int) -> np.ndarray:
    """Both products of a gated layer and its reader, each split over `threads`."""
    h = kernels.rows_times_blocks(x, examples, w_in, spans,
                                  np.empty((examples.size, w_in.shape[2]), np.float32), threads)
    out = np.zeros((x.shape[0], w_out.shape[2]), np.float32)
    return kernels.accumulate_blocks_times_rows(h, examples, w_out, spans, out, threads)


def test_repeated_calls_equal_one_thread_even_after_the_workers_slept():
    args = problem(0)
    want = forward(*args, threads=1)
    for round_ in range(40):
        threads = 2 + round_ % 3  # the pool grows to 3 workers and is asked for fewer
        np.testing.assert_array_equal(forward(*args, threads=threads), want)
        if round_ % 10 == 9:
            time.sleep(0.01)  # past the workers' spin: they sleep and must be woken


def test_rounds_of_different_sizes_back_to_back_never_mix():
    """Rounds of different chunk counts handed out with no pause between them, so workers
    are often still leaving one round as the next starts: every product equals one thread's,
    and the reader, which adds into its output, would show any chunk run twice or skipped."""
    small, large = problem(2, batch=3, blocks=2, n=128), problem(3, batch=40, blocks=12)
    wants = [forward(*args, threads=1) for args in (small, large)]
    for round_ in range(1500):
        args, want = (small, wants[0]) if round_ % 2 else (large, wants[1])
        np.testing.assert_array_equal(forward(*args, threads=2 + round_ % 2), want)


def test_callers_on_several_threads_at_once_each_get_their_own_products():
    """One caller holds the pool; the others run their products on their own thread."""
    problems = [problem(seed) for seed in range(4)]
    wants = [forward(*args, threads=1) for args in problems]
    failures = []

    def caller(index: int) -> None:
        for _ in range(60):
            got = forward(*problems[index], threads=2)
            if not np.array_equal(got, wants[index]):
                failures.append(index)
                return

    callers = [threading.Thread(target=caller, args=(i,)) for i in range(4)]
    for t in callers:
        t.start()
    for t in callers:
        t.join()
    assert failures == []


def _threads_of_this_process() -> int:
    return len(os.listdir("/proc/self/task"))


def _child_forward(queue) -> None:
    before = _threads_of_this_process()
    got = forward(*problem(1), threads=2)
    queue.put((got, _threads_of_this_process() - before))


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads in /proc")
def test_a_forked_child_starts_its_own_workers():
    """The parent's workers do not exist in a fork: the child starts its own (one more thread
    after its first split product) rather than running every chunk alone, and its products
    equal the parent's."""
    args = problem(1)
    want = forward(*args, threads=2)  # the parent's pool has a worker now
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child_forward, args=(queue,))
    child.start()
    got, started = queue.get(timeout=60)
    child.join(timeout=60)
    assert child.exitcode == 0
    np.testing.assert_array_equal(got, want)
    assert started == 1


def test_keep_awake_holds_idle_workers_spinning_until_it_is_cleared():
    args = problem(5)
    forward(*args, threads=2)  # the pool has a worker
    # Idle past its short spin (SPIN_NS, 0.2 ms), a worker sleeps; held awake, it spins.
    assert eventually(lambda: kernels.sleeping_workers() >= 1)
    kernels.keep_awake(30.0)
    assert eventually(lambda: kernels.sleeping_workers() == 0)
    time.sleep(0.05)  # a hundred times its usual spin: still awake
    assert kernels.sleeping_workers() == 0
    np.testing.assert_array_equal(forward(*args, threads=2), forward(*args, threads=1))
    kernels.keep_awake(0)
    assert eventually(lambda: kernels.sleeping_workers() >= 1)
