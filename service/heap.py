"""Keeps the garbage collector's full collections short while the server serves.

A full collection walks every object the process holds, with the GIL held: with torch, FastAPI
and the models loaded that is long enough to show in the health probes' latency under a stream
of 1024-example requests (`python -m benchmarks.hostile_bodies`, its last phase), since no
thread of the server answers anything meanwhile.
`gc.freeze()` moves every object alive at that moment into a permanent generation that
collections skip, so afterwards a full collection walks only what requests made since.

Called once the models are loaded and after each load or unload: the previous freeze is undone
first and everything collected, so that an unloaded model's reference cycles are freed rather
than kept frozen. That one full collection is paid by the admin request, once."""

from __future__ import annotations

import gc


def freeze_long_lived() -> None:
    """Collect, then move every surviving object out of the collector's reach (see above)."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
