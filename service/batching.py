"""Dynamic batching: concurrent requests for one model version run as one forward.

Each model version has one `Batcher`: an asyncio queue of pending requests and one worker task
that takes the oldest request together with every request queued behind it (up to
`max_batch_size` examples), optionally waits up to `max_delay_s` from the oldest's arrival for
more, concatenates them, runs the forward on a worker thread (the event loop keeps serving),
and hands each request back its own rows and compute reports. Under load, requests queue while
a forward runs and the next forward takes them all, so batches form without any waiting; a
delay only helps light, bursty load. With batching off (`max_batch_size` 1) each request runs
alone. The forward is never entered by two threads at once, which the engine's buffers and CUDA
graphs need.

A small forward (at most `inline_max_examples` examples) with nothing else queued runs on the
event loop's own thread instead: handing a lone example's forward of ~0.1 ms to the worker
thread and its result back costs more than the forward (each hand-off wakes a sleeping thread,
slow on a virtual machine's idle vCPU), and with nothing queued there is no other request for
the loop to read meanwhile. Under load requests queue, batches form and run on the thread.
Where the server has no other request in progress (`alone`: none read, queued or answering),
the model is idle and there is no delay to wait for company, a forward of at most
`alone_max_examples` examples (of any size: with nothing else in progress the loop has nothing
to read meanwhile) runs within `submit` itself, without the queue, the worker task and the
hand-off to the thread and back (`docs/history/alone-on-the-loop/`). Requests that arrive
together are all in progress at once (the server counts a request from its headers), so they
still queue and share a batch.

A forward runs at most `max_forward_examples` examples (where set): a larger request runs as
several forwards of that many, and after each it goes back to the end of the queue, so the
requests that arrived meanwhile run before its next part. One client's largest requests then
hold the model for one such forward at a time, not for all of their examples, and every other
request waits at most about that long for its turn (`docs/reliability.md`). The request's
answer is its parts joined; its timings count every forward that ran it.

The queue is bounded in examples, not requests: a request that would take it past
`max_queue_examples` is refused at once (`QueueFull`, a 503 with Retry-After), so an overloaded
server sheds load instead of growing latency without bound. `close()` drains: it stops taking
requests, finishes every request already accepted, then ends the worker.

Letters: B examples of a request, D input units.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from .engine import BatchResult


class QueueFull(Exception):
    """The model's queue holds as many examples as it may; the caller should retry later."""


class BatcherClosed(Exception):
    """The model is being unloaded or the server is shutting down."""


@dataclass
class Timings:
    queue_ms: float  # from arrival to the start of the forward that ran it
    compute_ms: float  # the forward (the whole batch)
    batch_size: int  # examples in that forward, this request's included


@dataclass
class _Pending:
    inputs: np.ndarray  # (B, D)
    arrived: float
    future: asyncio.Future = field(repr=False)
    done: int = 0  # examples already run, where the request runs in several forwards
    parts: list[BatchResult] = field(default_factory=list, repr=False)  # their results
    ready: float = 0.0  # when it last began waiting for a forward (arrival, or its last)
    waited_ms: float = 0.0  # waiting for forwards so far
    largest: int = 0  # examples in the largest forward that ran some of it

    def __post_init__(self) -> None:
        self.ready = self.arrived

    @property
    def left(self) -> int:
        """Examples not yet run."""
        return self.inputs.shape[0] - self.done


class Batcher:
    def __init__(self, infer: Callable[[np.ndarray], BatchResult], *, max_batch_size: int,
                 max_delay_s: float, max_queue_examples: int,
                 on_batch: Callable[[int], None] | None = None,
                 inline_max_examples: int = 0, alone_max_examples: int | None = None,
                 max_forward_examples: int | None = None) -> None:
        """`alone_max_examples`: None takes `inline_max_examples`. `max_forward_examples`:
        the most examples one forward runs (None: no limit; see the module docstring)."""
        if max_forward_examples is not None and max_forward_examples < 1:
            raise ValueError(f"max_forward_examples must be at least 1, got "
                             f"{max_forward_examples}")
        self._infer = infer
        self.max_batch_size = max_batch_size
        self.max_forward_examples = max_forward_examples
        self.inline_max_examples = inline_max_examples
        self.alone_max_examples = max(inline_max_examples, alone_max_examples or 0)
        self.max_delay_s = max_delay_s
        self.max_queue_examples = max_queue_examples
        self._on_batch = on_batch
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._queued_examples = 0
        self._closing = False
        self._idle = False  # the worker waits on an empty queue, no forward running
        # One thread: forwards of one model never overlap (see the module docstring).
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="sparsegate-forward")
        self._worker = asyncio.get_running_loop().create_task(self._run())

    @property
    def queued_examples(self) -> int:
        return self._queued_examples

    async def submit(self, inputs: np.ndarray, alone: bool = False
                     ) -> tuple[BatchResult, Timings]:
        """Run inputs (B, D) in some batch; returns this request's rows only. `alone`: the
        server has no other request in progress (see the module's docstring)."""
        if self._closing:
            raise BatcherClosed("the model is unloading or the server is shutting down")
        rows = inputs.shape[0]
        if self._queued_examples + rows > self.max_queue_examples:
            raise QueueFull(f"{self._queued_examples} examples are already waiting for this "
                            f"model (limit {self.max_queue_examples})")
        if (alone and self._idle and self._queue.empty() and rows <= self.alone_max_examples
                and rows <= self._forward_limit and self.max_delay_s == 0.0):
            return self._run_now(inputs)
        pending = _Pending(inputs, time.perf_counter(),
                           asyncio.get_running_loop().create_future())
        self._queued_examples += rows
        self._queue.put_nowait(pending)
        return await pending.future

    async def close(self) -> None:
        """Refuse new requests, finish the accepted ones, stop the worker."""
        self._closing = True
        await self._queue.put(None)  # type: ignore[arg-type]  # wakes the worker to finish
        await self._worker
        self._executor.shutdown(wait=True)

    @property
    def _forward_limit(self) -> int | float:
        return self.max_forward_examples or float("inf")

    def _run_now(self, inputs: np.ndarray) -> tuple[BatchResult, Timings]:
        """A small forward with the model idle, run by the caller: no queue, no worker."""
        result = self._infer(inputs)
        if self._on_batch is not None:
            self._on_batch(inputs.shape[0])
        return result, Timings(0.0, result.compute_ms, inputs.shape[0])

    async def _run(self) -> None:
        carry: _Pending | None = None  # a request taken that did not fit the last batch
        while True:
            if carry is None:
                self._idle = True  # waiting with nothing taken: no forward runs
                try:
                    first = await self._queue.get()
                finally:
                    self._idle = False
            else:
                first, carry = carry, None
            if first is None:  # close(): every request accepted before it has been taken
                if self._queue.empty():
                    return
                self._queue.put_nowait(None)  # requests partly run are back behind it
                continue
            if self._dropped(first):
                continue
            # (request, the first of its examples in this forward, the last + 1)
            room = min(self.max_batch_size, self._forward_limit)
            take = int(min(first.left, self._forward_limit))
            batch, size = [(first, first.done, first.done + take)], take
            deadline = first.arrived + self.max_delay_s
            stop = False
            while size < room:
                try:
                    if self._queue.empty():
                        timeout = deadline - time.perf_counter()
                        if timeout <= 0:
                            break
                        nxt = await asyncio.wait_for(self._queue.get(), timeout)
                    else:
                        nxt = self._queue.get_nowait()
                except TimeoutError:
                    break
                if nxt is None:
                    stop = True
                    break
                if self._dropped(nxt):
                    continue
                if size + nxt.left > room:
                    carry = nxt  # runs first in the next batch
                    break
                batch.append((nxt, nxt.done, nxt.done + nxt.left))
                size += nxt.left
            await self._run_batch(batch, size)
            if stop:  # the sentinel goes back, behind whatever the batch left unfinished
                self._queue.put_nowait(None)

    def _dropped(self, pending: _Pending) -> bool:
        """Whether the request's caller went away (its future cancelled) before this part
        of it ran: then none of the rest of it runs, and its place in the queue is freed."""
        if not pending.future.done():
            return False
        self._queued_examples -= pending.left
        return True

    async def _run_batch(self, batch: list[tuple[_Pending, int, int]], size: int) -> None:
        started = time.perf_counter()
        only, start, stop = batch[0]
        inputs = (only.inputs[start:stop] if len(batch) == 1
                  else np.concatenate([p.inputs[lo:hi] for p, lo, hi in batch]))  # (size, D)
        try:
            if size <= self.inline_max_examples and self._queue.empty():
                result = self._infer(inputs)  # see the module's docstring
            else:
                result = await asyncio.get_running_loop().run_in_executor(
                    self._executor, self._infer, inputs)
        except Exception as error:  # the forward failed: every request of the batch hears it
            for pending, _, _ in batch:
                self._queued_examples -= pending.left
                if not pending.future.done():
                    pending.future.set_exception(error)
            return
        finished = time.perf_counter()
        if self._on_batch is not None:
            self._on_batch(size)
        row = 0
        for pending, lo, hi in batch:
            self._queued_examples -= hi - lo
            pending.parts.append(result.rows(row, row + hi - lo))
            row += hi - lo
            pending.done = hi
            pending.waited_ms += (started - pending.ready) * 1e3
            pending.ready = finished
            pending.largest = max(pending.largest, size)
            if self._dropped(pending):  # a caller that went away has cancelled it
                continue
            if pending.left:
                self._queue.put_nowait(pending)  # behind the requests that came meanwhile
                continue
            answer = BatchResult.joined(pending.parts)
            pending.future.set_result((answer, Timings(pending.waited_ms, answer.compute_ms,
                                                       pending.largest)))
