"""The API's documentation pages, served from files installed with the server: no CDN.

FastAPI's own /docs and /redoc pages load Swagger UI and ReDoc from cdn.jsdelivr.net (and fonts
from Google) without integrity pinning: they fail on a machine without internet access, and
whoever controls that CDN runs script in this server's origin. Here the same pages load the
copies that the `fastapi-offline` package ships (Swagger UI 5, which reads OpenAPI 3.1, and
ReDoc), so what runs is what was installed, and the pages work offline. Swagger UI's online
validator badge, which sends the schema's URL to validator.swagger.io, is turned off.
`--no-docs` serves neither page (the schema at /openapi.json stays).
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_URL = "/docs/assets"


def install_docs(app: FastAPI) -> None:
    """Serve /docs (Swagger UI) and /redoc (ReDoc) from the installed assets. The app must be
    made with `docs_url=None, redoc_url=None`, so FastAPI's CDN pages are not served too."""
    # The package's files: swagger-ui-bundle.js, swagger-ui.css, redoc.standalone.js,
    # favicon.png (looked up here, so a server run with --no-docs does not need the package).
    assets = files("fastapi_offline") / "static"
    app.mount(ASSETS_URL, StaticFiles(directory=str(assets)), name="docs-assets")
    redirect_url = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"

    def url(request: Request, path: str) -> str:
        """`path` under the prefix a proxy serves the app at (its root_path)."""
        return f"{request.scope.get('root_path', '')}{path}"

    def asset(request: Request, name: str) -> str:
        return url(request, f"{ASSETS_URL}/{name}")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=url(request, app.openapi_url), title=f"{app.title} - Swagger UI",
            swagger_js_url=asset(request, "swagger-ui-bundle.js"),
            swagger_css_url=asset(request, "swagger-ui.css"),
            swagger_favicon_url=asset(request, "favicon.png"),
            oauth2_redirect_url=url(request, redirect_url),
            swagger_ui_parameters={"validatorUrl": None})

    @app.get(redirect_url, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        return get_redoc_html(
            openapi_url=url(request, app.openapi_url), title=f"{app.title} - ReDoc",
            redoc_js_url=asset(request, "redoc.standalone.js"),
            redoc_favicon_url=asset(request, "favicon.png"), with_google_fonts=False)
