"""Work whose cost a client decides (decoding a request body, encoding a response of many
examples), off the event loop.

The event loop answers every connection (health probes included), so nothing one request can
make slow may run on it. Such work runs on one dedicated worker thread: its cost is already
capped before it starts (`service.json_budget`, `--max-instances`), and more threads would not
help, since orjson's parsing and writing and numpy's list conversions hold the GIL for their whole
call; one thread keeps a single contender for the GIL beside the loop, which then waits at most
one capped call.

The hop to the thread and back costs about 150 us (measured on the project's 2-core machine),
as much as decoding 250 JSON values, so small work stays on the loop: a body of at most
`INLINE_VALUES` JSON values and `INLINE_BYTES` bytes (about 0.6 ms to decode there; the byte
bound covers long strings and binary tensors, whose cost is per byte), or a response of at most
`INLINE_EXAMPLES` examples.

A request alone on the server (`service.inference.alone`: no other request read, queued or
answering) has its body decoded and its answer encoded on the loop up to larger bounds
(`ALONE_VALUES` and `ALONE_BYTES`, `ALONE_EXAMPLES`; 65,536 values as `benchmarks.peer` writes
them would take about 1.9 ms to decode, scaling `python -m benchmarks.json_decode`'s 0.74 ms
for 25,088): with nothing else in progress the loop has nothing to do meanwhile, and the
worker would be no help to it anyway while orjson or numpy hold the GIL for their whole call
(the compiled JSON reader lets it go, but reads a long tensor on two threads when alone).
With the forward's own hop (`service.batching`), a lone batch of 32 examples spent 0.2-0.3 ms
less at the server beside its forward (`docs/history/alone-on-the-loop/`).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

INLINE_VALUES = 1024
INLINE_BYTES = 64 * 1024
INLINE_EXAMPLES = 16
ALONE_VALUES = 65536
ALONE_BYTES = 2 * 1024 * 1024
ALONE_EXAMPLES = 256

_WORKER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sparsegate-bodies")


def cheap_to_decode(values: int, body_bytes: int, alone: bool = False) -> bool:
    """Whether a body of `values` JSON values in `body_bytes` is decoded on the loop; `alone`:
    its request is the only one in progress."""
    if alone:
        return values <= ALONE_VALUES and body_bytes <= ALONE_BYTES
    return values <= INLINE_VALUES and body_bytes <= INLINE_BYTES


# Asked once: os.cpu_count reads the system's files on every call.
_CPUS = os.cpu_count() or 1


def reader_threads(alone: bool) -> int:
    """Threads the JSON reader may use for a long tensor (`service.json_native`): two where the
    request is alone, as then nothing else wants the second core; one beside other requests,
    whose forwards use it."""
    return 2 if alone and _CPUS > 1 else 1


def cheap_to_encode(examples: int, alone: bool = False) -> bool:
    """Whether the answer for `examples` examples is encoded on the loop."""
    return examples <= (ALONE_EXAMPLES if alone else INLINE_EXAMPLES)


async def run_off_loop(work: Callable[..., T], *args: object, inline: bool = False) -> T:
    """work(*args) on the body worker thread, or right here when `inline` (work too small to
    be worth the hop); its exceptions (4xx ApiErrors) propagate."""
    if inline:
        return work(*args)
    return await asyncio.get_running_loop().run_in_executor(_WORKER, work, *args)
