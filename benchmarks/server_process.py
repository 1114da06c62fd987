"""`sparsegate-serve` in a subprocess on loopback, for benchmarks and tests: started on a free
port, returned once `/v2/health/ready` answers 200, stopped with SIGTERM."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_ready(url: str, timeout_s: float, check: Callable[[], None] = lambda: None
                     ) -> bool:
    """Poll `url`/v2/health/ready until it answers 200 (True) or `timeout_s` passes (False);
    `check` runs before each poll and may raise to give up early."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        check()
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return False


class HttpServerProcess:
    """A server in a subprocess on `port` of loopback, returned once `/v2/health/ready` answers
    200; `stop()` ends it and returns everything it printed."""

    def __init__(self, name: str, command: list[str], port: int, *,
                 env: dict[str, str] | None = None, ready_timeout_s: float = 120.0) -> None:
        self.name, self.port = name, port
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(command, env={**os.environ, **(env or {})},
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True)
        if wait_until_ready(self.url, ready_timeout_s, self._still_running):
            return
        output = self.stop()
        raise RuntimeError(f"{name} was not ready in {ready_timeout_s:.0f} s:\n{output}")

    def _still_running(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n"
                               f"{self.process.stdout.read()}")

    def stop(self) -> str:
        """SIGTERM, then wait (SIGKILL after 30 s); returns everything the server printed."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.stdout.read()

    def __enter__(self) -> HttpServerProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class ServerProcess(HttpServerProcess):
    def __init__(self, repository: str | Path, *args: str, env: dict[str, str] | None = None,
                 ready_timeout_s: float = 120.0, launcher: list[str] | None = None) -> None:
        """`launcher`: what runs the server's module (default: this interpreter's `-m`)."""
        port = free_port()
        super().__init__(
            "sparsegate-serve",
            [*(launcher or [sys.executable, "-m"]), "service.cli",
             "--model-repository", str(repository),
             "--port", str(port), "--log-level", "warning", *args],
            port, env=env, ready_timeout_s=ready_timeout_s)
