"""uvicorn's HTTP/1.1 protocol (httptools) with the connection limits it lacks.

uvicorn bounds the idle time between requests on a kept-alive connection (`timeout_keep_alive`)
and nothing else: with httptools, headers of any size are accumulated (300 MiB answered 200), a
connection that never finishes its headers, or never sends a byte, is held forever, an upload
may stall forever holding what it sent, and every connection accepted costs a file descriptor
(`limit_concurrency` answers 503 only once a request's headers are complete, so sockets that
send nothing still pile up). This subclass adds, per connection:

- a connection cap: past `max_connections` open connections, a new one takes the place of the
  connection that has waited longest without a request in progress (idle between requests,
  or its first headers still unfinished), which is closed; where every connection has a
  request in progress, the new one is answered 503 with Retry-After at once and closed. So
  sockets left idle, however many, cannot lock out a health probe or a client that sends its
  request: a connection holds its slot against newcomers only while it is being served;
- a header deadline: the request line and headers must be complete within `header_timeout_s`
  of the connection opening, or of the first byte of a later request on it (408, or a silent
  close where not a byte of a request came);
- a header size cap: `max_header_bytes` for the request line and headers (431), checked on
  every read, so at most one read (256 KiB) beyond it is ever held;
- a body deadline: the body must be complete within `body_timeout_s` of the headers (408), a
  total, not an idle time, so trickling a byte now and then does not keep it alive;
- a cap on the bytes after the headers: twice the body limit, chunk framing and trailers
  included (the app refuses a body over the limit itself; this bounds what is read and thrown
  away when it answered without reading, and trailers, which httptools accumulates).

Each request's scope also holds, under `REQUESTS_IN_PROGRESS`, a function giving how many
requests the server has in progress (from their headers to the end of their answer, this one
included), which the batcher reads (`service.batching`).

Each refusal writes a JSON `{"error": ...}` response with `Connection: close`, then lingers.
So does a response the app sent before the request's body was all read (a 413 for a body over
a limit, a 404 before a large body): uvicorn would read and throw away the rest of that body
and keep the connection, so a client sending 8 MiB bodies back to back would cost the server
8 MiB of reading each, and come straight back. Lingering: half-close (the client reads the
answer, then sees the end), throw away up to 256 KiB more (so a client that sent a little too
much can finish sending and read the answer), then stop reading, and close after a second (at
once if the client closes first). Closing at once would send a reset that can destroy the
answer; stopping reading makes a client that keeps sending wait for the close.
"""

from __future__ import annotations

import json
import logging
from asyncio import TimerHandle, Transport
from dataclasses import dataclass
from http import HTTPStatus

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .config import Settings

log = logging.getLogger("sparsegate.http")

LINGER_S = 1.0  # after a refusal, how long the client has to read it before the close
LINGER_BYTES = 256 * 1024  # read and thrown away meanwhile, at most
# Open files the server needs besides client sockets: the listening socket, model files,
# logs, the interpreter's and libraries' own.
FILES_RESERVED = 256
# Scope key: a function of no arguments, the requests in progress on the server.
REQUESTS_IN_PROGRESS = "sparsegate.requests_in_progress"


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int
    max_header_bytes: int
    header_timeout_s: float
    body_timeout_s: float
    max_body_bytes: int
    retry_after_s: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionLimits:
        return cls(settings.max_connections, settings.max_header_bytes,
                   settings.header_timeout_s, settings.body_timeout_s,
                   settings.max_body_bytes, settings.retry_after_s)


def bounded_protocol(limits: ConnectionLimits) -> type[HttpToolsProtocol]:
    """The protocol class to give uvicorn (`http=`), with `limits` bound."""
    return type("BoundedHttpProtocol", (BoundedHttpProtocol,), {"limits": limits})


def reserve_file_descriptors(max_connections: int) -> str | None:
    """Raise this process's open-file limit to fit `max_connections` sockets and the files the
    server itself needs, or say why it cannot (None when it fits): a cap above the limit
    would let idle sockets exhaust descriptors before it refuses any."""
    try:
        import resource
    except ImportError:  # not a POSIX system: nothing to check
        return None
    needed = max_connections + FILES_RESERVED
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return None
    if hard != resource.RLIM_INFINITY and hard < needed:
        return (f"max_connections {max_connections} needs {needed} open files, over this "
                f"system's limit of {hard} (ulimit -Hn): lower --max-connections")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    return None


def error_response(status: int, message: str, headers: tuple[str, ...] = ()) -> bytes:
    body = json.dumps({"error": message}).encode()
    head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", "content-type: application/json",
            f"content-length: {len(body)}", "connection: close", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class BoundedHttpProtocol(HttpToolsProtocol):
    limits: ConnectionLimits  # set on the subclass `bounded_protocol` makes

    def connection_made(self, transport: Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._lingering = False  # answered and closing: what arrives is thrown away
        self._thrown_away = 0
        self._reading_head = True  # between a request's first byte (or the connection) and
        self._head_bytes = 0       # the end of its headers; bytes read meanwhile
        self._after_head_bytes = 0  # bytes read after the current request's headers
        self._deadline: TimerHandle | None = None
        self._waiting_since = self.loop.time()  # since the connection or the last response
        # The set's size first: counting the connections not already closing walks the set,
        # which only matters once it is over the cap.
        if (len(self.connections) > self.limits.max_connections
                and self._open_connections() > self.limits.max_connections):
            victim = self._longest_waiting()
            if victim is None:
                self._refuse(503, f"too many connections (limit "
                                  f"{self.limits.max_connections}), every one of them being "
                                  f"served; retry after {self.limits.retry_after_s} s",
                             (f"retry-after: {self.limits.retry_after_s}",))
                return
            log.debug("connection cap reached: closing the connection waiting longest")
            victim.transport.close()
        self._arm(self.limits.header_timeout_s, self._head_timed_out)

    def _open_connections(self) -> int:
        """Connections not already closing (a closed one leaves the set only a loop turn
        later)."""
        return sum(1 for c in self.connections if not c.transport.is_closing())

    def _waiting(self) -> bool:
        """No request in progress: idle, or reading a request's headers."""
        busy = self._lingering or self.transport.is_closing() or self.pipeline or (
            self.cycle is not None and not self.cycle.response_complete)
        return not busy

    def _longest_waiting(self) -> BoundedHttpProtocol | None:
        waiting = [c for c in self.connections if c is not self and c._waiting()]
        return min(waiting, key=lambda c: c._waiting_since, default=None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            self._thrown_away += len(data)
            if self._thrown_away - len(data) <= LINGER_BYTES < self._thrown_away:
                self.transport.pause_reading()
            return
        if self._reading_head:
            self._head_bytes += len(data)
        else:
            self._after_head_bytes += len(data)
        super().data_received(data)
        if self._lingering or self.transport.is_closing():
            return
        if self._reading_head and self._head_bytes > self.limits.max_header_bytes:
            self._refuse(431, "request line and headers are over the limit of "
                              f"{self.limits.max_header_bytes} bytes")
        elif self._after_head_bytes > 2 * self.limits.max_body_bytes:
            self._refuse(413, "request body (with chunk framing and trailers) is over twice "
                              f"the limit of {self.limits.max_body_bytes} bytes")

    # httptools callbacks

    def _requests_in_progress(self) -> int:
        # uvicorn's set of request tasks, every connection's: a request's task is made as its
        # headers complete, before any task runs, and leaves the set once it has answered.
        return len(self.tasks)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope[REQUESTS_IN_PROGRESS] = self._requests_in_progress  # type: ignore[literal-required]
        if self._lingering:
            return
        self._reading_head = True
        self._after_head_bytes = 0
        if self._deadline is None:  # the first request's deadline runs from the connection
            self._arm(self.limits.header_timeout_s, self._head_timed_out)

    def on_headers_complete(self) -> None:
        if self._lingering:
            return
        self._reading_head = False
        self._head_bytes = 0
        self._disarm()
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self.limits.max_header_bytes:
            self._refuse(431, f"request line and headers ({size} bytes) are over the limit "
                              f"of {self.limits.max_header_bytes} bytes")
            return
        super().on_headers_complete()
        self._arm(self.limits.body_timeout_s, self._body_timed_out)

    def on_body(self, body: bytes) -> None:
        if not self._lingering:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._lingering:
            return
        self._disarm()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        if self.cycle is not None and self.cycle.more_body and not self.transport.is_closing():
            # Answered before the body was all read: linger rather than read the rest.
            self.server_state.total_requests += 1
            self._linger()
            return
        self._waiting_since = self.loop.time()
        super().on_response_complete()

    # deadlines and refusals

    def _arm(self, seconds: float, callback) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _head_timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._head_bytes == 0:  # not a byte of a request: just an idle connection
            self.transport.close()
            return
        self._refuse(408, f"request headers not complete within "
                          f"{self.limits.header_timeout_s:g} s")

    def _body_timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        log.debug("closing a connection whose body took over %g s", self.limits.body_timeout_s)
        if self.cycle is not None and not self.cycle.response_started:
            # The app, still reading, sees a disconnect; its answer goes nowhere.
            self.cycle.disconnected = True
            self.cycle.message_event.set()
            self.transport.write(error_response(
                408, f"request body not complete within {self.limits.body_timeout_s:g} s"))
        self.transport.close()

    def _refuse(self, status: int, message: str, headers: tuple[str, ...] = ()) -> None:
        log.debug("refusing a connection: %d %s", status, message)
        if self.cycle is not None and self.cycle.response_started \
                and not self.cycle.response_complete:
            self.transport.close()  # mid-response: no room for another answer
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True  # an app still running answers no one
            self.cycle.message_event.set()
        self.transport.write(error_response(status, message, headers))
        self._linger()

    def _linger(self) -> None:
        self._lingering = True
        self.flow.resume_reading()  # throw away what comes, up to LINGER_BYTES
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._arm(LINGER_S, self.transport.close)
