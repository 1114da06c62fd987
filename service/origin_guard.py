"""Refuse requests that a web page on another site makes a visitor's browser send.

A browser sends some cross-origin requests without asking the server first (no CORS
preflight): form posts, but also a `fetch` with no body, `navigator.sendBeacon`, or an
`ArrayBuffer` body, which carry no Content-Type at all. CORS only stops the page from reading
the answer; the request has already run. So any page a user visits could make the user's
browser run inferences on a server on their machine or network, or load and unload its models.

Browsers say where a request comes from, and a page cannot forge it: `Sec-Fetch-Site`
(same-origin, same-site, cross-site or none; every current browser) and `Origin` (every
cross-origin request, and same-origin ones too except GET and HEAD). Every request whose
method is not GET, HEAD or OPTIONS (inference and the admin routes alike: all of them make
the server work or change its state) is refused with 403 before routing when
- its `Origin` is not one CORS allows (`--cors-origins`), and
- `Sec-Fetch-Site` says same-site or cross-site (same-site covers another port of the same host,
  such as a development server on localhost:3000), or, where a browser sent no
  `Sec-Fetch-Site`, its `Origin` is not this server's own (the `Host` it was sent to).
Requests with neither header (curl, tritonclient, any non-browser client) are served as
before. GET, HEAD and OPTIONS change nothing here and a page cannot read their answers unless
CORS allows it, so links to /docs from other sites keep working; reading answers through DNS
rebinding is the host guard's business (`service.host_guard`).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from .metrics import Metrics
from .refusal import first_header, refuse

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ROUTE_LABEL = "(cross-site request)"
# What a browser's Sec-Fetch-Site says for a request the user or this server's own pages made.
OWN_SITES = frozenset({"same-origin", "none"})
DEFAULT_PORTS = {"http": "80", "https": "443"}


def same_origin(origin: str, host: str | None) -> bool:
    """Whether `origin` (scheme://host[:port]) names the server the request was sent to."""
    if host is None:
        return False
    parts = urlsplit(origin)
    if not parts.netloc or parts.scheme not in DEFAULT_PORTS:
        return False  # "null" (sandboxed frames, file: pages) is nobody's own origin
    default_port = f":{DEFAULT_PORTS[parts.scheme]}"
    return (parts.netloc.lower().removesuffix(default_port)
            == host.lower().removesuffix(default_port))


class OriginGuard:
    """ASGI middleware: 403 for a state-changing request from another site's page."""

    def __init__(self, app: ASGIApp, cors_origins: list[str], metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        # The same test as Starlette's CORSMiddleware (exact strings, or "*" for every origin),
        # so a request passes here exactly when CORS would let its page read the answer.
        self.allow_all = "*" in cors_origins
        self.allowed = frozenset(cors_origins)

    def cross_site(self, headers: list[tuple[bytes, bytes]]) -> str | None:
        """Why the request is refused, or None when it may run."""
        origin = first_header(headers, b"origin")
        if origin is not None and (self.allow_all or origin in self.allowed):
            return None
        site = first_header(headers, b"sec-fetch-site")
        if site is not None:
            if site.lower() in OWN_SITES:
                return None
            return f"a {site.lower()} request (Origin: {origin or 'none'})"
        if origin is None or same_origin(origin, first_header(headers, b"host")):
            return None
        return f"a request from the page at {origin}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in SAFE_METHODS:
            reason = self.cross_site(scope["headers"])
            if reason is not None:
                await refuse(scope, receive, send, self.metrics, ROUTE_LABEL, 403,
                             f"refused {reason[:200]}: web pages on other sites may not use "
                             "this server; list a page's origin in --cors-origins "
                             "(SPARSEGATE_CORS_ORIGINS) to let it")
                return
        await self.app(scope, receive, send)
