"""The gate-map page at /ui/: static files shipped in the package (service/ui/), served by the
server itself, so the page works offline and runs only what was installed.

What keeps it safe for a server that hostile pages and hostile networks may reach:
- The files are read once, at start-up, from the package folder into memory, by name: a
  request can only name one of them (no path is ever built from a request, so there is nothing
  to traverse, and no folder is listed). Only .html, .js, .css and .svg files are taken, each
  with its content type fixed here, and every answer says `X-Content-Type-Options: nosniff`.
- A strict Content-Security-Policy: scripts, styles, images and requests from this server
  only, no inline script or style, no plugins, no framing by other pages (clickjacking), no
  forms posted anywhere. The page's scripts build the document with textContent and DOM
  calls, never from HTML strings, so a model name or a training command is shown as text.
- The page calls the public JSON API, like any client; same-origin requests pass the origin
  guard, and the host guard answers only names the server is meant to be reached by.

`GET /` sends a browser (one that asks for HTML before JSON) to the page, and answers every
other client `{"status": "alive"}` as KServe's v1 liveness does.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib.resources import files

from fastapi import FastAPI, Request, Response
from fastapi.responses import RedirectResponse

from .errors import not_found

log = logging.getLogger("sparsegate.service")

UI_PATH = "/ui"
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
_FILE_NAME = re.compile(r"[a-z0-9][a-z0-9-]*\.(html|js|css|svg)", re.ASCII)
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    # Revalidated on every load (an ETag answers 304), so a new server's page is never mixed
    # with an old one's cached scripts.
    "Cache-Control": "no-cache",
}
HTML_TYPES = ("text/html", "application/xhtml+xml")
JSON_TYPES = ("application/json", "application/*", "*/*")


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    content_type: str
    etag: str


def load_ui_files() -> dict[str, StaticFile]:
    """The page's files by name, read from the installed package."""
    folder = files("service") / "ui"
    found: dict[str, StaticFile] = {}
    if not folder.is_dir():
        return found
    for entry in folder.iterdir():
        match = _FILE_NAME.fullmatch(entry.name)
        if match is None or not entry.is_file():
            continue
        body = entry.read_bytes()
        found[entry.name] = StaticFile(body, CONTENT_TYPES["." + match.group(1)],
                                       f'"{hashlib.sha256(body).hexdigest()[:32]}"')
    return found


def _quality(accept: str, media_types: tuple[str, ...]) -> float:
    """The highest q an Accept header gives any of `media_types` (0 where none is listed)."""
    best = 0.0
    for item in accept.split(","):
        media, *parameters = (part.strip() for part in item.split(";"))
        if media.lower() not in media_types:
            continue
        quality = 1.0
        for parameter in parameters:
            key, _, value = parameter.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        best = max(best, quality)
    return best


def prefers_html(accept: str | None) -> bool:
    """Whether a client asks for HTML before JSON: browsers do when they open a page
    (text/html first, */* last); API clients send */* or application/json, and a tie goes to
    JSON, so that they keep today's answer."""
    if not accept:
        return False
    html = _quality(accept, HTML_TYPES)
    return html > 0 and html > _quality(accept, JSON_TYPES)


def page_url(request: Request, name: str = "") -> str:
    """The page's address under the prefix a proxy serves the app at (its root_path)."""
    return f"{request.scope.get('root_path', '')}{UI_PATH}/{name}"


def install_ui(app: FastAPI) -> bool:
    """Serve the page's files under /ui/ (index.html at /ui/); False, and nothing served,
    where the package was installed without them (the API does not need them)."""
    ui_files = load_ui_files()
    if "index.html" not in ui_files:
        log.warning("the gate-map page's files are not installed (service/ui): /ui/ is off; "
                    "reinstall sparsegate to serve it")
        return False

    def answer(request: Request, name: str) -> Response:
        found = ui_files.get(name)
        if found is None:
            raise not_found(f"no such page file: {name[:100]!r}")
        headers = {**SECURITY_HEADERS, "ETag": found.etag}
        if request.headers.get("if-none-match") == found.etag:
            return Response(status_code=304, headers=headers)
        return Response(found.body, media_type=found.content_type, headers=headers)

    @app.get(UI_PATH, include_in_schema=False)
    async def ui_folder(request: Request) -> Response:
        return RedirectResponse(page_url(request), status_code=308)

    @app.get(f"{UI_PATH}/", include_in_schema=False)
    async def ui_index(request: Request) -> Response:
        return answer(request, "index.html")

    @app.get(UI_PATH + "/{name}", include_in_schema=False)
    async def ui_file(name: str, request: Request) -> Response:
        return answer(request, name)

    return True
