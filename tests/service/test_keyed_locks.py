"""Per-model locks: one holder per name at a time, and no entry left once nobody holds or waits,
whatever happened (done, failed, cancelled while waiting)."""

from __future__ import annotations

import asyncio

import pytest

from service.keyed_locks import KeyedLocks


def test_one_holder_per_key_and_nothing_left_after():
    async def scenario() -> list[str]:
        locks, events = KeyedLocks(), []

        async def hold(key: str, tag: str) -> None:
            async with locks.hold(key):
                events.append(f"+{tag}")
                await asyncio.sleep(0.01)
                events.append(f"-{tag}")

        await asyncio.gather(hold("a", "a1"), hold("a", "a2"), hold("b", "b1"))
        assert len(locks) == 0
        return events

    events = asyncio.run(scenario())
    a = [e for e in events if e[1] == "a"]
    assert a in (["+a1", "-a1", "+a2", "-a2"], ["+a2", "-a2", "+a1", "-a1"])  # never overlap
    assert events.index("+b1") < events.index("-a1")  # another key does not wait


def test_the_entry_goes_when_the_holder_fails_or_a_waiter_is_cancelled():
    async def scenario() -> None:
        locks = KeyedLocks()
        with pytest.raises(RuntimeError):
            async with locks.hold("x"):
                raise RuntimeError("load failed")
        assert len(locks) == 0

        release = asyncio.Event()

        async def holder() -> None:
            async with locks.hold("x"):
                await release.wait()

        held = asyncio.create_task(holder())
        await asyncio.sleep(0)
        waiter = asyncio.create_task(locks.hold("x").__aenter__())
        await asyncio.sleep(0)
        assert len(locks) == 1
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        release.set()
        await held
        assert len(locks) == 0

    asyncio.run(scenario())


def test_many_distinct_keys_leave_nothing():
    async def scenario() -> int:
        locks = KeyedLocks()
        for i in range(10_000):
            async with locks.hold(f"model-{i}-" + "x" * 100):
                pass
        return len(locks)

    assert asyncio.run(scenario()) == 0
