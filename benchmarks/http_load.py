"""A closed-loop HTTP/1.1 load generator on raw asyncio streams, for `benchmarks.service`.

Python HTTP clients cost about a millisecond of CPU per request; on a 2-core machine shared with
the server that caps what is measured at the client's speed, not the server's (measured here:
httpx's async client at 32 connections kept the server ~15 % busy). This one sends pre-encoded
requests over keep-alive connections and reads responses by Content-Length, ~20x cheaper, so
the server is what saturates.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class LoadResult:
    seconds: float
    ok: int = 0
    failed: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)  # of 2xx responses, for checking

    @property
    def requests_per_s(self) -> float:
        return self.ok / self.seconds


def encode_post(url: str, path: str, body: object) -> bytes:
    return encode_request(url, path, json.dumps(body).encode())


def encode_request(url: str, path: str, data: bytes, content_type: str = "application/json",
                   headers: dict[str, str] | None = None) -> bytes:
    """A POST of `data` to `path` as raw HTTP/1.1 bytes."""
    parts = urlsplit(url)
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    return (f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: {content_type}"
            f"\r\n{extra}Content-Length: {len(data)}\r\n\r\n").encode() + data


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    request: bytes) -> tuple[int, bytes]:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = next((int(line.split(":", 1)[1]) for line in lines[1:]
                   if line.lower().startswith("content-length:")), None)
    if length is None:
        raise RuntimeError("response without Content-Length (chunked) is not supported here")
    return status, await reader.readexactly(length)


async def closed_loop(url: str, requests: list[bytes], clients: int, seconds: float,
                      keep_bodies: bool = False) -> LoadResult:
    """`clients` connections, each sending its next request as soon as the last one answered,
    for `seconds`; requests taken round-robin from `requests`."""
    parts = urlsplit(url)
    stop_at = time.perf_counter() + seconds
    result = LoadResult(seconds)

    async def user(k: int) -> None:
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        i = k
        try:
            while time.perf_counter() < stop_at:
                start = time.perf_counter()
                status, body = await _exchange(reader, writer, requests[i % len(requests)])
                i += clients
                if 200 <= status < 300:
                    result.ok += 1
                    result.latencies_ms.append((time.perf_counter() - start) * 1e3)
                    if keep_bodies:
                        result.bodies.append(body)
                else:
                    result.failed += 1
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(user(k) for k in range(clients)))
    result.seconds = time.perf_counter() - start
    return result


async def one_at_a_time(url: str, requests: list[bytes], count: int) -> LoadResult:
    """One connection, `count` requests one after another (round-robin over `requests`),
    every latency and body kept."""
    parts = urlsplit(url)
    result = LoadResult(0.0)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    start_all = time.perf_counter()
    try:
        for i in range(count):
            start = time.perf_counter()
            status, body = await _exchange(reader, writer, requests[i % len(requests)])
            if not 200 <= status < 300:
                raise RuntimeError(f"HTTP {status}: {body[:300]!r}")
            result.latencies_ms.append((time.perf_counter() - start) * 1e3)
            result.bodies.append(body)
            result.ok += 1
    finally:
        writer.close()
    result.seconds = time.perf_counter() - start_all
    return result
