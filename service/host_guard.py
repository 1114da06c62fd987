"""Answer only requests addressed to this server: the `Host` header is checked (DNS rebinding).

A page at http://attacker.example:8000 can have its name re-resolved to 127.0.0.1 (or to any
address on the visitor's network) once loaded. Its requests then reach this server and, to the
browser, are same-origin: the page reads every answer and Origin checks see nothing wrong. What
gives it away is the `Host` header, which still says attacker.example. So a request is
answered only when its Host is
- an IP address (a page can only be same-origin with an address by being served from it), or
  `localhost` (no outside page is served from that name), with any port; or
- a name listed in `--allowed-hosts` (SPARSEGATE_ALLOWED_HOSTS): exact names, `*.example.com`
  for the subdomains of example.com, or `*` for any name (which gives up this defence).
Anything else gets 400 before routing, health checks included. This does not depend on the
address the server binds: in a container it binds 0.0.0.0 even when its port is published on
the host's loopback only, and the names clients use (a Kubernetes Service, a proxy's upstream
name) are only known to whoever deploys it. A request without Host (HTTP/1.0; browsers always
send one) is answered; one with two Host headers is refused (RFC 9112 section 3.2).
"""

from __future__ import annotations

import ipaddress

from starlette.types import ASGIApp, Receive, Scope, Send

from .metrics import Metrics
from .refusal import header_values, refuse

ROUTE_LABEL = "(host not allowed)"
ALWAYS_ALLOWED_NAMES = frozenset({"localhost"})


def host_name(host: str) -> str:
    """The name or address of a Host header value, lower-cased, without port or IPv6
    brackets."""
    host = host.strip().lower()
    if host.startswith("["):  # [IPv6 address]:port
        address, bracket, rest = host[1:].partition("]")
        if bracket and (rest == "" or (rest[:1] == ":" and rest[1:].isdigit())):
            return address
        return host
    name, colon, port = host.rpartition(":")
    return name if colon and port.isdigit() and ":" not in name else host


def is_ip_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def host_allowed(host: str, patterns: frozenset[str]) -> bool:
    name = host_name(host)
    if name in ALWAYS_ALLOWED_NAMES or is_ip_address(name) or "*" in patterns:
        return True
    if name in patterns:
        return True
    # "*.example.com" matches "a.example.com" and "a.b.example.com", not "example.com" (as
    # Starlette's TrustedHostMiddleware does).
    return any(p.startswith("*.") and name.endswith(p[1:]) for p in patterns)


class HostGuard:
    """ASGI middleware: 400 for a request whose Host is neither an address nor listed."""

    def __init__(self, app: ASGIApp, allowed_hosts: list[str], metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self.patterns = frozenset(h.lower() for h in allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            hosts = header_values(scope["headers"], b"host")
            message = None
            if len(hosts) > 1:
                message = "more than one Host header"
            elif hosts and not host_allowed(hosts[0].decode("latin-1"), self.patterns):
                shown = hosts[0].decode("latin-1")[:100]
                message = (f"Host {shown!r} is not served here: this server answers requests "
                           "addressed to an IP address, to localhost, or to a name listed in "
                           "--allowed-hosts (SPARSEGATE_ALLOWED_HOSTS), which keeps web pages "
                           "from reading it through DNS rebinding; list the name clients use")
            if message is not None:
                await refuse(scope, receive, send, self.metrics, ROUTE_LABEL, 400, message)
                return
        await self.app(scope, receive, send)
