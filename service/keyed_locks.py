"""One asyncio lock per key (a model name), kept only while someone holds or waits for it.

A plain `dict.setdefault(name, Lock())` keeps one entry for every name ever asked for, so a
client sending unload requests with millions of distinct names grows the server's memory without
bound. Here an entry counts its holder and waiters and is dropped when the last one leaves, so
the table holds at most one entry per load or unload in progress.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field


@dataclass
class _Entry:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0  # the holder and the waiters


class KeyedLocks:
    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        """Hold the lock of `key` for the body of the `async with`."""
        # No await between the lookup and the count, so on one event loop no other task can
        # drop the entry in between.
        entry = self._entries.setdefault(key, _Entry())
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:  # also when cancelled while waiting
            entry.users -= 1
            if entry.users == 0:
                del self._entries[key]

    def __len__(self) -> int:
        """Keys with a holder or a waiter."""
        return len(self._entries)
