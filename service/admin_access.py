"""Who may use the model management routes (load, unload, the repository index).

As NVIDIA Triton's `--model-control-mode`: with `--model-control none` (the default) the server
serves the models it loaded at start-up and these routes answer 403 saying how to enable them;
with `--model-control explicit` they are served to callers that present the API key
(`X-API-Key: KEY` or `Authorization: Bearer KEY`), or to anyone when the server was started with
`--allow-open-admin` and no key (unsafe: whoever reaches the port may unload every model).
Settings refuse an empty key and explicit control with neither a key nor that flag, so the
server never starts in a state where "keyed" means "open".

The key is compared as bytes: the header's bytes as sent against the key's UTF-8 bytes.
HTTP header values are bytes (latin-1 text, by the standard), so a non-ASCII key is
usable by any client that sends it UTF-8 encoded, as curl does from a UTF-8 terminal
(with httpx, pass the header value as `key.encode()`); nothing is decoded or normalised. The
comparison is `hmac.compare_digest`, in constant time whatever the lengths.
"""

from __future__ import annotations

import hmac

from fastapi import Request

from .errors import ApiError

ENABLE_HINT = ("start the server with --model-control explicit (SPARSEGATE_MODEL_CONTROL="
               "explicit) and an API key (SPARSEGATE_API_KEY)")


def presented_key(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The key a request presents, as the bytes it sent: `X-API-Key` (the first, when given,
    wins) or a Bearer token; None when it presents neither."""
    api_key = authorization = None
    for name, value in headers:
        name = name.lower()
        if name == b"x-api-key" and api_key is None:
            api_key = value
        elif name == b"authorization" and authorization is None:
            authorization = value
    if api_key is not None:
        return api_key.strip(b" \t")
    if authorization is not None:
        scheme, _, token = authorization.strip(b" \t").partition(b" ")
        if scheme.lower() == b"bearer":
            return token.strip(b" \t")
    return None


def require_admin(request: Request) -> None:
    """FastAPI dependency of the model management routes."""
    settings = request.app.state.settings
    if settings.model_control != "explicit":
        raise ApiError(403, "model control is off: load, unload and the repository index are "
                            f"disabled on this server; to enable them, {ENABLE_HINT}")
    if settings.api_key is None:
        if settings.admin_open:
            return
        raise ApiError(403, f"no API key is configured for model control; {ENABLE_HINT}")
    given = presented_key(request.scope["headers"])
    if not given:  # absent, or empty: an empty value is never a key
        raise ApiError(401, "this endpoint needs the API key (X-API-Key or Authorization: "
                            "Bearer)", {"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(given, settings.api_key.get_secret_value().encode("utf-8")):
        raise ApiError(403, "wrong API key")
