"""What the guards in front of the routes share: reading raw ASGI headers and answering a
refusal as the API's JSON error, counted in the metrics.

The guards refuse before routing, so each refusal is counted under one fixed route label (a
raw path as a label would let any client grow the metrics without bound).
"""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from .metrics import Metrics


def header_values(headers: list[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    """Every value of header `name` (lower-case), in the order sent."""
    return [value for key, value in headers if key.lower() == name]


def first_header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    """The first value of header `name` as text (HTTP header bytes are latin-1); None when
    absent."""
    values = header_values(headers, name)
    return values[0].decode("latin-1").strip() if values else None


async def refuse(scope: Scope, receive: Receive, send: Send, metrics: Metrics, label: str,
                 status: int, message: str) -> None:
    metrics.observe_error(label, status)
    await JSONResponse({"error": message}, status_code=status)(scope, receive, send)
