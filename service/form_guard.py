"""Refuse requests that a web page on any origin could send: form and text/plain bodies.

A browser sends a cross-origin POST without first asking the server (no CORS preflight) only
when its Content-Type is one of the three a plain HTML form can produce:
application/x-www-form-urlencoded, multipart/form-data and text/plain. The server parses its
bodies as JSON (or the binary tensor extension) whatever the header says, so such a form
could make the server run inferences, or, where model control is open, load and unload models;
CORS being off only stops the page from reading the answer. The origin guard
(`service.origin_guard`) already refuses cross-site requests by their Origin and
Sec-Fetch-Site headers; this one also covers browsers too old to send either on a form post,
and pages whose origin CORS allows. These requests are answered 415 before any route runs.
Requests without a Content-Type (tritonclient sends none) and with any other type are served
as before.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from .metrics import Metrics
from .refusal import first_header, refuse

# The CORS "simple request" content types (Fetch standard, CORS-safelisted request-header).
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data",
                        "text/plain"})
# Methods that carry a body or change state; GET and HEAD cannot trigger work here.
GUARDED_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
ROUTE_LABEL = "(form content type)"


def media_type(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The Content-Type's media type, lower-cased without parameters; None when absent."""
    value = first_header(headers, b"content-type")
    return None if value is None else value.split(";", 1)[0].strip().lower()


class FormGuard:
    """ASGI middleware: 415 for a guarded method whose body is a form or text/plain."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in GUARDED_METHODS:
            media = media_type(scope["headers"])
            if media in FORM_TYPES:
                await refuse(scope, receive, send, self.metrics, ROUTE_LABEL, 415,
                             f"Content-Type {media} is refused: browsers send it from any web "
                             "page without asking; send JSON as application/json (or no "
                             "Content-Type), the binary tensor extension as "
                             "application/octet-stream")
                return
        await self.app(scope, receive, send)
