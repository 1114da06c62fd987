"""Which bodies and answers are handled on the event loop, and which on the body thread."""

from __future__ import annotations

import asyncio
import threading

import pytest

from service.off_loop import (
    ALONE_BYTES,
    ALONE_EXAMPLES,
    ALONE_VALUES,
    INLINE_BYTES,
    INLINE_EXAMPLES,
    INLINE_VALUES,
    cheap_to_decode,
    cheap_to_encode,
    reader_threads,
    run_off_loop,
)


@pytest.mark.parametrize(("values", "body_bytes", "alone", "inline"), [
    (INLINE_VALUES, INLINE_BYTES, False, True),
    (INLINE_VALUES + 1, 100, False, False),
    (10, INLINE_BYTES + 1, False, False),
    # a batch of 32 JSON examples of 784 numbers: on the loop only when alone
    (25_088, 517_634, False, False),
    (25_088, 517_634, True, True),
    (ALONE_VALUES, ALONE_BYTES, True, True),
    (ALONE_VALUES + 1, 100, True, False),
    (10, ALONE_BYTES + 1, True, False),
])
def test_bodies_decoded_on_the_loop(values, body_bytes, alone, inline):
    assert cheap_to_decode(values, body_bytes, alone) is inline


@pytest.mark.parametrize(("examples", "alone", "inline"), [
    (INLINE_EXAMPLES, False, True), (INLINE_EXAMPLES + 1, False, False),
    (32, True, True), (ALONE_EXAMPLES, True, True), (ALONE_EXAMPLES + 1, True, False),
])
def test_answers_encoded_on_the_loop(examples, alone, inline):
    assert cheap_to_encode(examples, alone) is inline


def test_the_alone_bounds_hold_the_others():
    """Alone, nothing the loop would decode or encode for a request among others goes to the
    thread."""
    assert ALONE_VALUES >= INLINE_VALUES and ALONE_BYTES >= INLINE_BYTES
    assert ALONE_EXAMPLES >= INLINE_EXAMPLES


@pytest.mark.parametrize(("cpus", "alone", "threads"), [
    (2, True, 2), (2, False, 1), (16, True, 2), (1, True, 1), (1, False, 1)])
def test_a_request_alone_reads_its_json_on_two_threads_where_there_are_two(
        cpus, alone, threads, monkeypatch):
    monkeypatch.setattr("service.off_loop._CPUS", cpus)
    assert reader_threads(alone) == threads


@pytest.mark.parametrize("inline", [True, False])
def test_work_runs_where_it_is_sent_and_its_errors_reach_the_caller(inline):
    def where(fail: bool) -> str:
        if fail:
            raise ValueError("refused")
        return threading.current_thread().name

    async def main():
        loop_thread = threading.current_thread().name
        ran_on = await run_off_loop(where, False, inline=inline)
        with pytest.raises(ValueError, match="refused"):
            await run_off_loop(where, True, inline=inline)
        return loop_thread, ran_on

    loop_thread, ran_on = asyncio.run(main())
    assert (ran_on == loop_thread) is inline
    assert inline or ran_on.startswith("sparsegate-bodies")
