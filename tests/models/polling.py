"""Waiting for what another thread does: a thread's sleep or wake is seen a scheduler's tick
or so after it happens, later on a loaded machine."""

from __future__ import annotations

import time
from collections.abc import Callable


def eventually(condition: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    """Whether condition() holds within timeout_s, polled every 5 ms."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return condition()
