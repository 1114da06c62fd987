"""The batcher: concurrent requests share forwards, each gets back exactly its own rows; a full
queue refuses at once; closing finishes every accepted request."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from models.compute import ComputeReport, ComputeReports
from service.batching import Batcher, BatcherClosed, QueueFull
from service.engine import BatchResult


def echo_infer(calls: list[int], delay: float = 0.0):
    """A forward whose outputs identify the rows: logits = inputs; one report per row with
    executed_macs = the row's first value."""
    lock = threading.Lock()

    def infer(x: np.ndarray) -> BatchResult:
        assert lock.acquire(blocking=False), "two forwards ran at once"
        try:
            time.sleep(delay)
            calls.append(x.shape[0])
            reports = ComputeReports.of(
                [ComputeReport(100, int(row[0]), 1, (1,), (2,), (1,)) for row in x])
            return BatchResult(x.copy(), x.copy(), reports, 1.0)
        finally:
            lock.release()

    return infer


def rows(start: int, count: int) -> np.ndarray:
    return np.arange(start, start + count, dtype=np.float32)[:, None].repeat(3, 1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_concurrent_requests_are_batched_and_each_gets_its_own_rows(seed):
    calls: list[int] = []
    sizes = np.random.default_rng(seed).integers(1, 6, size=40).tolist()

    async def main():
        batcher = Batcher(echo_infer(calls, 0.002), max_batch_size=16, max_delay_s=0.01,
                          max_queue_examples=10_000)
        starts = np.cumsum([0, *sizes[:-1]]).tolist()
        results = await asyncio.gather(*(batcher.submit(rows(s, n))
                                         for s, n in zip(starts, sizes, strict=True)))
        await batcher.close()
        return starts, results

    starts, results = asyncio.run(main())
    for start, size, (result, timings) in zip(starts, sizes, results, strict=True):
        np.testing.assert_array_equal(result.logits, rows(start, size))
        assert [r.executed_macs for r in result.reports] == list(range(start, start + size))
        assert size <= timings.batch_size <= 16 and timings.queue_ms >= 0
    assert sum(calls) == sum(sizes)
    assert len(calls) < len(sizes) / 2  # forwards really were shared
    assert max(calls) <= 16


def test_without_batching_each_request_runs_alone():
    calls: list[int] = []

    async def main():
        batcher = Batcher(echo_infer(calls), max_batch_size=1, max_delay_s=0.0,
                          max_queue_examples=100)
        await asyncio.gather(*(batcher.submit(rows(i, 1)) for i in range(10)))
        await batcher.close()

    asyncio.run(main())
    assert calls == [1] * 10


def test_a_request_larger_than_the_batch_runs_whole_with_no_forward_limit():
    calls: list[int] = []

    async def main():
        batcher = Batcher(echo_infer(calls), max_batch_size=4, max_delay_s=0.0,
                          max_queue_examples=100)
        result, _ = await batcher.submit(rows(0, 10))
        await batcher.close()
        return result

    assert asyncio.run(main()).logits.shape == (10, 3) and calls == [10]


@pytest.mark.parametrize("alone", [False, True])
def test_a_request_larger_than_a_forward_runs_in_parts_and_is_answered_whole(alone):
    calls: list[int] = []

    async def main():
        batcher = Batcher(echo_infer(calls), max_batch_size=4, max_delay_s=0.0,
                          max_queue_examples=100, alone_max_examples=64,
                          max_forward_examples=4)
        answer = await batcher.submit(rows(0, 10), alone=alone)
        assert batcher.queued_examples == 0
        await batcher.close()
        return answer

    result, timings = asyncio.run(main())
    assert calls == [4, 4, 2]
    np.testing.assert_array_equal(result.logits, rows(0, 10))
    assert [r.executed_macs for r in result.reports] == list(range(10))
    # every forward that ran it counts: echo_infer's take 1 ms each
    assert timings.compute_ms == 3.0 and timings.batch_size == 4


def test_requests_that_arrive_during_a_large_one_run_between_its_parts():
    calls: list[int] = []
    finished: list[str] = []

    async def main():
        batcher = Batcher(echo_infer(calls, 0.02), max_batch_size=4, max_delay_s=0.0,
                          max_queue_examples=100, max_forward_examples=4)

        async def ask(name: str, start: int, count: int):
            result, _ = await batcher.submit(rows(start, count))
            finished.append(name)
            return result

        large = asyncio.ensure_future(ask("large", 0, 12))
        await asyncio.sleep(0.005)  # its first part is running
        small = await ask("small", 100, 1)
        large_result = await large
        await batcher.close()
        return small, large_result

    small, large = asyncio.run(main())
    # the small request ran right after the large one's first part, alone: the large one's
    # 8 examples left did not fit beside it
    assert calls == [4, 1, 4, 4] and finished == ["small", "large"]
    np.testing.assert_array_equal(small.logits, rows(100, 1))
    np.testing.assert_array_equal(large.logits, rows(0, 12))


def test_a_large_request_whose_caller_went_away_runs_no_further_part():
    calls: list[int] = []

    async def main():
        batcher = Batcher(echo_infer(calls, 0.02), max_batch_size=4, max_delay_s=0.0,
                          max_queue_examples=100, max_forward_examples=4)
        large = asyncio.ensure_future(batcher.submit(rows(0, 12)))
        await asyncio.sleep(0.005)  # its first part is running
        large.cancel()
        result, _ = await batcher.submit(rows(50, 1))
        assert batcher.queued_examples == 0
        await batcher.close()
        return result

    assert asyncio.run(main()).logits[0, 0] == 50
    assert calls == [4, 1]


def test_a_request_whose_caller_went_away_while_it_waited_never_runs():
    calls: list[int] = []

    async def main():
        batcher = Batcher(echo_infer(calls, 0.02), max_batch_size=1, max_delay_s=0.0,
                          max_queue_examples=100)
        running = asyncio.ensure_future(batcher.submit(rows(0, 1)))
        await asyncio.sleep(0.005)  # its forward is running
        waiting = asyncio.ensure_future(batcher.submit(rows(1, 3)))
        await asyncio.sleep(0)
        waiting.cancel()
        result, _ = await batcher.submit(rows(2, 1))
        await running
        assert batcher.queued_examples == 0
        await batcher.close()
        return result

    assert asyncio.run(main()).logits[0, 0] == 2
    assert calls == [1, 1]


def test_close_finishes_a_request_partly_run():
    calls: list[int] = []

    async def main():
        batcher = Batcher(echo_infer(calls, 0.005), max_batch_size=2, max_delay_s=0.0,
                          max_queue_examples=100, max_forward_examples=2)
        accepted = [asyncio.ensure_future(batcher.submit(rows(10 * i, 5))) for i in range(2)]
        await asyncio.sleep(0)
        await batcher.close()
        return [f.result()[0] for f in accepted]

    results = asyncio.run(main())
    assert sum(calls) == 10 and max(calls) == 2
    for i, result in enumerate(results):
        np.testing.assert_array_equal(result.logits, rows(10 * i, 5))


def test_a_forward_failing_in_a_large_requests_part_fails_it_and_frees_its_place():
    count = {"calls": 0}

    def infer(x):
        count["calls"] += 1
        if count["calls"] == 2:
            raise RuntimeError("boom")
        return BatchResult(x, x, ComputeReports.of([ComputeReport(1, 1, 0, (), (), ())] * len(x)),
                           1.0)

    async def main():
        batcher = Batcher(infer, max_batch_size=4, max_delay_s=0.0, max_queue_examples=100,
                          max_forward_examples=4)
        with pytest.raises(RuntimeError, match="boom"):
            await batcher.submit(rows(0, 10))
        assert batcher.queued_examples == 0
        result, _ = await batcher.submit(rows(7, 1))
        await batcher.close()
        return result

    assert asyncio.run(main()).logits[0, 0] == 7
    assert count["calls"] == 3


def test_a_full_queue_refuses_at_once_and_recovers():
    calls: list[int] = []

    async def main():
        batcher = Batcher(echo_infer(calls, 0.05), max_batch_size=2, max_delay_s=0.0,
                          max_queue_examples=4)
        first = [asyncio.ensure_future(batcher.submit(rows(i, 2))) for i in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(QueueFull):
            await batcher.submit(rows(9, 1))
        await asyncio.gather(*first)
        result, _ = await batcher.submit(rows(9, 1))  # room again
        await batcher.close()
        return result

    assert asyncio.run(main()).logits[0, 0] == 9


def test_close_finishes_accepted_requests_then_refuses():
    calls: list[int] = []

    async def main():
        batcher = Batcher(echo_infer(calls, 0.01), max_batch_size=2, max_delay_s=0.005,
                          max_queue_examples=100)
        accepted = [asyncio.ensure_future(batcher.submit(rows(i, 1))) for i in range(7)]
        await asyncio.sleep(0)
        await batcher.close()
        assert all(f.done() and not f.exception() for f in accepted)
        with pytest.raises(BatcherClosed):
            await batcher.submit(rows(0, 1))

    asyncio.run(main())
    assert sum(calls) == 7


def test_a_failing_forward_fails_only_its_batch():
    state = {"fail": True}

    def infer(x):
        if state.pop("fail", False):
            raise RuntimeError("boom")
        return BatchResult(x, x, ComputeReports.of([ComputeReport(1, 1, 0, (), (), ())] * len(x)),
                           1.0)

    async def main():
        batcher = Batcher(infer, max_batch_size=8, max_delay_s=0.0, max_queue_examples=100)
        with pytest.raises(RuntimeError, match="boom"):
            await batcher.submit(rows(0, 1))
        result, _ = await batcher.submit(rows(1, 1))
        assert batcher.queued_examples == 0
        await batcher.close()
        return result

    assert asyncio.run(main()).logits[0, 0] == 1


def threads_of(names: list[str]):
    """A forward that records the thread it ran on."""
    def infer(x):
        names.append(threading.current_thread().name)
        return BatchResult(x, x, ComputeReports.of([ComputeReport(1, 1, 0, (), (), ())] * len(x)),
                           1.0)
    return infer


@pytest.mark.parametrize("inline", [0, 1, 4])
def test_a_small_forward_with_nothing_queued_runs_on_the_event_loop_thread(inline):
    names: list[str] = []

    async def main():
        batcher = Batcher(threads_of(names), max_batch_size=8, max_delay_s=0.0,
                          max_queue_examples=100, inline_max_examples=inline)
        loop_thread = threading.current_thread().name
        for size in (1, 2, 4, 5):
            result, _ = await batcher.submit(rows(size, size))
            np.testing.assert_array_equal(result.logits, rows(size, size))
        await batcher.close()
        return loop_thread

    loop_thread = asyncio.run(main())
    on_loop = [name == loop_thread for name in names]
    assert on_loop == [size <= inline for size in (1, 2, 4, 5)]
    assert all(name.startswith("sparsegate-forward") for name, here in zip(names, on_loop,
                                                                           strict=True)
               if not here)


def test_with_requests_waiting_the_forward_runs_on_its_thread():
    """Requests queued behind a lone one: the lone one's forward is handed to the thread, so
    the loop keeps reading while it runs, and the rest form one batch after it."""
    names: list[str] = []

    async def main():
        batcher = Batcher(threads_of(names), max_batch_size=1, max_delay_s=0.0,
                          max_queue_examples=100, inline_max_examples=1)
        await asyncio.gather(*(batcher.submit(rows(i, 1)) for i in range(4)))
        await batcher.close()

    asyncio.run(main())
    # every forward but the last found others waiting behind it
    assert [name.startswith("sparsegate-forward") for name in names] == [True] * 3 + [False]


def tasks_of(tasks: list):
    """A forward that records the asyncio task it ran in (None on a thread)."""
    def infer(x: np.ndarray) -> BatchResult:
        try:
            tasks.append(asyncio.current_task())
        except RuntimeError:  # no running loop: the forward thread
            tasks.append(None)
        return BatchResult(x, x, ComputeReports.of([ComputeReport(1, 1, 0, (), (), ())] * len(x)),
                           1.0)
    return infer


def test_a_lone_small_request_on_an_idle_model_runs_within_its_own_submit():
    tasks: list = []
    batched: list[int] = []

    async def main():
        batcher = Batcher(tasks_of(tasks), max_batch_size=8, max_delay_s=0.0,
                          max_queue_examples=100, inline_max_examples=2, on_batch=batched.append)
        await asyncio.sleep(0)  # the worker waits on its empty queue
        for size in (1, 2, 3):
            result, timings = await batcher.submit(rows(size, size), alone=True)
            np.testing.assert_array_equal(result.logits, rows(size, size))
            assert timings.batch_size == size
        await batcher.submit(rows(0, 1))  # not known to be alone: through the worker task
        await batcher.close()
        return asyncio.current_task()

    caller = asyncio.run(main())
    # the third is over inline_max_examples: the worker's thread runs it
    assert tasks[:3] == [caller, caller, None]
    assert tasks[3] not in (caller, None)
    assert batched == [1, 2, 3, 1]


@pytest.mark.parametrize("alone_max", [None, 0, 4])
def test_a_lone_request_runs_within_its_submit_up_to_alone_max_examples(alone_max):
    """Alone on the server, a request of up to `alone_max_examples` (at least
    `inline_max_examples`) runs in the caller's task; a bigger one through the worker's
    thread; the same sizes not known to be alone go through the worker however small."""
    tasks: list = []

    async def main():
        batcher = Batcher(tasks_of(tasks), max_batch_size=8, max_delay_s=0.0,
                          max_queue_examples=100, inline_max_examples=1,
                          alone_max_examples=alone_max)
        await asyncio.sleep(0)
        for size in (1, 2, 4, 5):
            result, timings = await batcher.submit(rows(size, size), alone=True)
            np.testing.assert_array_equal(result.logits, rows(size, size))
            assert timings.queue_ms == 0.0 or size > max(1, alone_max or 0)
        await batcher.submit(rows(0, 2))
        await batcher.close()
        return asyncio.current_task()

    caller = asyncio.run(main())
    limit = max(1, alone_max or 0)
    assert [task is caller for task in tasks[:4]] == [size <= limit for size in (1, 2, 4, 5)]
    assert tasks[4] is not caller


def test_requests_not_alone_share_a_batch():
    calls: list[int] = []

    async def main():
        batcher = Batcher(echo_infer(calls), max_batch_size=8, max_delay_s=0.0,
                          max_queue_examples=100, inline_max_examples=1)
        await asyncio.sleep(0)
        results = await asyncio.gather(*(batcher.submit(rows(i, 1)) for i in range(3)))
        await batcher.close()
        return results

    results = asyncio.run(main())
    assert calls == [3]
    assert [r.logits[0, 0] for r, _ in results] == [0, 1, 2]


def test_with_a_delay_or_a_forward_running_a_lone_request_waits_its_turn():
    tasks: list = []

    async def main():
        delayed = Batcher(tasks_of(tasks), max_batch_size=8, max_delay_s=0.001,
                          max_queue_examples=100, inline_max_examples=1)
        await asyncio.sleep(0)
        await delayed.submit(rows(0, 1), alone=True)  # waits for company in the worker task
        await delayed.close()
        calls: list[int] = []
        busy = Batcher(echo_infer(calls, delay=0.05), max_batch_size=1, max_delay_s=0.0,
                       max_queue_examples=100, inline_max_examples=1)
        await asyncio.sleep(0)
        long = asyncio.ensure_future(busy.submit(rows(0, 2)))  # on the forward thread
        await asyncio.sleep(0.01)
        await busy.submit(rows(5, 1), alone=True)  # echo_infer asserts no overlap
        await long
        await busy.close()
        return asyncio.current_task(), calls

    caller, calls = asyncio.run(main())
    assert tasks[0] not in (caller, None)
    assert calls == [2, 1]
