"""A cap on the bytes of request bodies being received at once, over all connections.

Each body is capped (`--max-body-bytes`) and must arrive within `--body-timeout-s`, but many
slow uploads at once still add up: 512 connections each stalled just under 8 MiB would hold
4 GiB for a minute. So the bytes held by bodies still arriving are counted here, and a body
that would take the total past `--max-receiving-body-bytes` is refused with 503 and
Retry-After. A body is counted from its first byte until it has all arrived (or is refused);
decoding and the forward that follow are bounded by the batch queue instead.
"""

from __future__ import annotations

from .errors import unavailable


class ReceivingBodies:
    """Bytes of bodies being received; the event loop is the only user, so no lock."""

    def __init__(self) -> None:
        self.held = 0

    def take(self, size: int, limit: int, retry_after_s: int) -> None:
        if self.held + size > limit:
            raise unavailable(f"the server is receiving {self.held} bytes of request bodies "
                              f"(limit {limit}); retry after {retry_after_s} s", retry_after_s)
        self.held += size

    def give_back(self, size: int) -> None:
        self.held -= size


# One per server process: uvicorn runs one event loop, and every app in it shares the memory.
RECEIVING = ReceivingBodies()
