"""Connection limits against a real `sparsegate-serve`, with raw sockets: oversized headers,
too many connections, half-open and stalled requests, idle connections, too many bodies being
received at once. After each, the server still answers health. And a connection cap the
process has no file descriptors for is refused at start-up.

The server runs with short limits so that each test takes about a second: 1 s header, body and
keep-alive timeouts, 8 KiB of headers, 20 connections. Closing times are asserted between half
the timeout and the timeout plus 3 s (a noisy shared machine); without the limits these
connections stay open and the tests fail at the upper bound.
"""

from __future__ import annotations

import contextlib
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from .conftest import Server, write_repository

TIMEOUT_S = 1.0
MAX_CONNECTIONS = 20
MAX_HEADER_BYTES = 8192
RECEIVING_LIMIT = 4 << 20  # bytes of bodies being received at once
LATE_S = 3.0  # how much later than its timeout a close may come on a busy machine
# Request heads without their final blank line.
HEALTH = b"GET /v2/health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n"
PREDICT = b"POST /v1/models/tiny:predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = Server(write_repository(tmp_path_factory.mktemp("repo")),
                     "--header-timeout-s", str(TIMEOUT_S), "--body-timeout-s", str(TIMEOUT_S),
                     "--keep-alive-timeout-s", str(TIMEOUT_S),
                     "--max-connections", str(MAX_CONNECTIONS),
                     "--max-header-bytes", str(MAX_HEADER_BYTES),
                     "--max-body-bytes", str(1 << 20),
                     "--max-receiving-body-bytes", str(RECEIVING_LIMIT))
    yield running
    output = running.stop()
    assert "Traceback" not in output, output[-3000:]


@pytest.fixture(autouse=True)
def still_healthy(server):
    yield
    response = httpx.get(f"{server.url}/v2/health/ready", timeout=10)
    assert response.status_code == 200, response.text


def connect(server: Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def until_closed(sock: socket.socket, limit_s: float) -> tuple[bytes, float]:
    """What the server sends until it closes the connection, and after how many seconds;
    fails if it is still open after `limit_s`."""
    sock.settimeout(limit_s)
    start, received = time.monotonic(), b""
    try:
        while chunk := sock.recv(1 << 16):
            received += chunk
    except TimeoutError:
        raise AssertionError(f"still open after {limit_s} s; received {received[:200]!r}") \
            from None
    except ConnectionResetError:
        pass
    return received, time.monotonic() - start


def status_of(response: bytes) -> int:
    assert response.startswith(b"HTTP/1.1 "), response[:200]
    return int(response.split(b" ", 2)[1])


def test_headers_within_the_limit_are_served(server):
    with connect(server) as sock:
        sock.sendall(HEALTH + b"X-Pad: "
                     + b"a" * (MAX_HEADER_BYTES // 2) + b"\r\nConnection: close\r\n\r\n")
        response, _ = until_closed(sock, 10)
    assert status_of(response) == 200


@pytest.mark.parametrize("complete", [True, False], ids=["complete", "unfinished"])
def test_oversized_headers_are_refused_with_431(server, complete):
    head = HEALTH + b"X-Pad: " + b"a" * (4 * MAX_HEADER_BYTES)
    with connect(server) as sock:
        sock.sendall(head + (b"\r\n\r\n" if complete else b""))
        response, _ = until_closed(sock, 10)
    assert status_of(response) == 431
    assert b"over the limit" in response


def test_a_client_that_keeps_sending_headers_is_cut_off(server):
    # Header bytes without end, as fast as the server takes them: it answers 431 and closes
    # within its linger (1 s) instead of reading (and holding) them for ever.
    piece = b"a" * (1 << 16)
    with connect(server) as sock:
        sock.sendall(HEALTH + b"X-Pad: ")
        start = time.monotonic()
        with pytest.raises(OSError):  # reset or broken pipe once the server closed
            while time.monotonic() - start < 1 + LATE_S:
                sock.sendall(piece)


def test_a_body_refused_before_its_end_is_answered_then_closed(server):
    # Over the JSON value budget in its first bytes; the rest (under 256 KiB) is thrown away
    # so the client can finish sending and read the 413, and the connection then closes
    # rather than being read to the end of an arbitrarily large body.
    body = b'{"instances": [' + b"[]," * 100_000 + b"[]]}"
    with connect(server) as sock:
        sock.sendall(PREDICT +
                     b"Content-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body) + body)
        response, _ = until_closed(sock, 1 + LATE_S)
    assert status_of(response) == 413 and b"values" in response, response


@pytest.fixture(scope="module")
def patient_server(tmp_path_factory):
    """The same cap with header and body timeouts far longer than a test: what closes a
    connection there is the cap, not the clock."""
    running = Server(write_repository(tmp_path_factory.mktemp("repo")),
                     "--header-timeout-s", "60", "--body-timeout-s", "60",
                     "--max-connections", str(MAX_CONNECTIONS))
    yield running
    running.stop()


def test_idle_sockets_in_every_slot_do_not_lock_out_a_request(patient_server):
    # Every slot held by a socket that sent nothing, or half a request's headers: a new
    # connection takes the place of the one waiting longest, and its request is served; once
    # it has closed, the next one finds a free slot.
    server = patient_server
    idle, half = [], []
    try:
        for i in range(MAX_CONNECTIONS):
            idle.append(connect(server)) if i < MAX_CONNECTIONS // 2 else half.append(
                connect(server))
            time.sleep(0.02)  # accepted in this order
        for sock in half:
            sock.sendall(HEALTH)
        time.sleep(0.2)
        for _ in range(3):
            with connect(server) as sock:
                sock.sendall(HEALTH + b"Connection: close\r\n\r\n")
                response, _ = until_closed(sock, 10)
            assert status_of(response) == 200, response
            time.sleep(0.1)  # the server sees it close
        assert until_closed(idle[0], 5)[0] == b""  # the oldest made room
        half[-1].sendall(b"Connection: close\r\n\r\n")  # the newest still held on
        response, _ = until_closed(half[-1], 10)
        assert status_of(response) == 200, response
    finally:
        for sock in idle + half:
            sock.close()


def test_connections_over_the_limit_get_503_when_every_one_is_being_served(patient_server):
    # Uploads in progress are being served: none is closed for a newcomer, who gets 503.
    with stalled_uploads(patient_server, MAX_CONNECTIONS, 10) as socks:
        with connect(patient_server) as sock:
            sock.sendall(HEALTH + b"\r\n")
            response, _ = until_closed(sock, 10)
        assert status_of(response) == 503
        assert b"retry-after: " in response.lower() and b"too many connections" in response
        for upload in socks:  # still open, still being served
            upload.setblocking(False)
            with pytest.raises(BlockingIOError):
                upload.recv(1)
    time.sleep(0.2)  # the server sees them close


def test_a_connection_that_sends_nothing_is_closed(server):
    with connect(server) as sock:
        response, seconds = until_closed(sock, TIMEOUT_S + LATE_S)
    assert response == b"" and seconds >= TIMEOUT_S / 2


def trickle_bytes(sock: socket.socket, byte: bytes) -> None:
    """Send `byte` every 0.2 s until the server closes or the longest wait has passed."""
    try:
        for _ in range(int((TIMEOUT_S + LATE_S) / 0.2)):
            time.sleep(0.2)
            sock.sendall(byte)
    except OSError:
        pass


@pytest.mark.parametrize("trickle", [False, True], ids=["stalled", "trickling"])
def test_unfinished_headers_are_closed_after_the_header_timeout(server, trickle):
    with connect(server) as sock:
        start = time.monotonic()
        sock.sendall(HEALTH)
        if trickle:  # a byte every 0.2 s: the deadline is a total, not an idle time
            trickle_bytes(sock, b"X")
        response, _ = until_closed(sock, TIMEOUT_S + LATE_S)
        seconds = time.monotonic() - start
    assert status_of(response) == 408, response
    assert TIMEOUT_S / 2 <= seconds <= TIMEOUT_S + LATE_S, seconds


@pytest.mark.parametrize("trickle", [False, True], ids=["stalled", "trickling"])
def test_unfinished_bodies_are_closed_after_the_body_timeout(server, trickle):
    with connect(server) as sock:
        start = time.monotonic()
        sock.sendall(PREDICT +
                     b"Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n"
                     + b"[" * 1000)
        if trickle:
            trickle_bytes(sock, b" ")
        response, _ = until_closed(sock, TIMEOUT_S + LATE_S)
        seconds = time.monotonic() - start
    assert status_of(response) == 408, response
    assert TIMEOUT_S / 2 <= seconds <= TIMEOUT_S + LATE_S, seconds


def test_idle_kept_alive_connections_are_closed(server):
    with connect(server) as sock:
        sock.sendall(HEALTH + b"\r\n")
        answer = b""
        while not answer.endswith(b'{"live":true}') and (chunk := sock.recv(1 << 16)):
            answer += chunk
        assert status_of(answer) == 200
        response, seconds = until_closed(sock, TIMEOUT_S + LATE_S)
    assert response == b"" and seconds >= TIMEOUT_S / 2


@contextlib.contextmanager
def stalled_uploads(server: Server, count: int, sent: int) -> Iterator[list[socket.socket]]:
    """`count` connections, each having sent `sent` bytes of a 1 MB body, one after another;
    closed on leaving."""
    socks = []
    try:
        for _ in range(count):
            socks.append(connect(server))
            socks[-1].sendall(PREDICT + b"Content-Length: 1000000\r\n\r\n" + b" " * sent)
            time.sleep(0.05)  # received in this order
        yield socks
    finally:
        for sock in socks:
            sock.close()


def assert_closed_by_body_timeout(socks: list[socket.socket]) -> None:
    for sock in socks:
        response, _ = until_closed(sock, TIMEOUT_S + LATE_S)
        assert status_of(response) == 408, response


def test_many_stalled_uploads_are_all_closed(server):
    # Connections up to the limit, each with part of a body sent: all closed by the body
    # timeout, and the server serves again afterwards (the autouse check).
    with stalled_uploads(server, MAX_CONNECTIONS - 2,
                         RECEIVING_LIMIT // MAX_CONNECTIONS) as socks:
        assert_closed_by_body_timeout(socks)


def test_bodies_being_received_are_capped_in_total(server):
    # Five uploads of 800 kB fit under the 4 MiB being received at once; the sixth does not
    # and is answered 503 at once, not after the body timeout.
    with stalled_uploads(server, 5, 800_000) as socks:
        with connect(server) as sock:
            start = time.monotonic()
            sock.sendall(PREDICT + b"Content-Length: 1000000\r\n\r\n" + b" " * 800_000)
            response, _ = until_closed(sock, TIMEOUT_S + LATE_S)
            assert status_of(response) == 503, response
            assert b"retry-after: 1" in response.lower(), response
            assert time.monotonic() - start < TIMEOUT_S, "refused only by the body timeout"
        assert_closed_by_body_timeout(socks)


def test_a_connection_cap_over_the_open_file_limit_is_refused_at_start(tmp_path):
    # A cap the process cannot open that many sockets for would never be reached: sockets
    # would run out first.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > 1_000_000:
        pytest.skip("no open-file limit under the largest cap allowed")
    run = subprocess.run([sys.executable, "-m", "service.cli", "--model-repository",
                          str(tmp_path), "--max-connections", str(hard)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "lower --max-connections" in run.stderr, run.stderr
