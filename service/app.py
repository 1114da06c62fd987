"""The FastAPI application: `create_app(settings)`.

Models are loaded and warmed up in the lifespan, never at import; `/v2/health/ready` says yes
only once that is done and a model is serving. On shutdown (uvicorn's SIGTERM handling stops
accepting and waits for in-flight requests) every model's queue is drained before exit.

Before routing: a Host that is neither an address nor listed is refused with 400
(`service.host_guard`, DNS rebinding), a state-changing request from another site's page with
403 unless CORS allows its origin (`service.origin_guard`), and bodies a web page could send
unasked (forms, text/plain) with 415 (`service.form_guard`). Every error is JSON
`{"error": message}` with a 4xx status, or 503 with Retry-After on overload; an unexpected
exception is logged and answered 500 with the same shape, and counted.

Besides the APIs: /docs and /redoc (`service.docs_pages`), and the gate-map page at /ui/
(`service.ui_pages`), where `GET /` sends a browser; both off with their flags.
"""

from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import routes_admin, routes_v1, routes_v1_about, routes_v2
from .config import Settings
from .docs_pages import install_docs
from .errors import ApiError
from .form_guard import FormGuard
from .host_guard import HostGuard
from .infer_shortcut import InferShortcut
from .metrics import CONTENT_TYPE, Metrics
from .openapi import install_schemas
from .origin_guard import OriginGuard
from .repository import ModelRepository
from .schemas import Liveness
from .ui_pages import install_ui, page_url, prefers_html

log = logging.getLogger("sparsegate.service")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        started = time.perf_counter()
        await app.state.repository.load_all()
        routes_admin.models_changed(app)
        app.state.ready = True
        log.info("ready in %.1f s: %s", time.perf_counter() - started,
                 ", ".join(app.state.repository.names()) or "no models")
        try:
            yield
        finally:
            app.state.ready = False
            await app.state.repository.close()

    app = FastAPI(title="sparsegate", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Serves sparsely gated networks; every response says how much "
                              "compute its request saved.")
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.state.repository = ModelRepository(settings, app.state.metrics)
    app.state.ready = False
    app.include_router(routes_v2.router)
    app.include_router(routes_v1.router)
    app.include_router(routes_v1_about.router)
    app.include_router(routes_admin.router)
    # The last added runs first: Host, then CORS (preflights answered, and refusals to an
    # allowed origin readable by its page), then the cross-site and form guards; inference
    # requests then go straight to their endpoints (`service.infer_shortcut`).
    app.add_middleware(InferShortcut, routes=routes_v2.SHORTCUT_ROUTES)
    app.add_middleware(FormGuard, metrics=app.state.metrics)
    app.add_middleware(OriginGuard, cors_origins=settings.cors_origins,
                       metrics=app.state.metrics)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                           allow_methods=["GET", "POST"], allow_headers=["*"])
    app.add_middleware(HostGuard, allowed_hosts=settings.allowed_hosts,
                       metrics=app.state.metrics)
    if settings.docs:
        install_docs(app)
    serves_ui = settings.ui and install_ui(app)
    if settings.model_control == "explicit" and settings.admin_open:
        log.warning("model control is open (--allow-open-admin): anyone who can reach this "
                    "server may load and unload its models")
    _install_error_handlers(app)
    install_schemas(app)

    @app.get("/", tags=["operations"], response_model=Liveness, responses={307: {
        "description": "a browser (Accept: text/html before JSON) is sent to the gate-map page "
                       "at /ui/, unless the server runs with --no-ui"}})
    async def alive(request: Request) -> Response:
        """Liveness as KServe's v1 protocol answers it (its clients' is_server_live)."""
        # The answer depends on Accept: caches must keep the two apart.
        if serves_ui and prefers_html(request.headers.get("accept")):
            return RedirectResponse(page_url(request), status_code=307,
                                    headers={"Vary": "Accept"})
        return JSONResponse({"status": "alive"}, headers={"Vary": "Accept"})

    @app.get("/metrics", include_in_schema=True, tags=["operations"],
             response_class=PlainTextResponse,
             responses={200: {"description": "Prometheus text format",
                              "content": {CONTENT_TYPE: {"schema": {"type": "string"}}}}})
    async def metrics(request: Request) -> Response:
        return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE)

    return app


def _install_error_handlers(app: FastAPI) -> None:
    def answer(request: Request, status: int, message: str,
               headers: dict[str, str] | None = None) -> JSONResponse:
        route = request.scope.get("route")
        app.state.metrics.observe_error(getattr(route, "path", "(no route)"), status)
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        return answer(request, error.status, error.message, error.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        message = error.detail if isinstance(error.detail, str) else str(error.detail)
        if error.status_code == 404 and message == "Not Found":
            message = f"no such endpoint: {request.method} {request.url.path}"
        return answer(request, error.status_code, message, getattr(error, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                             for e in error.errors()[:10])
        return answer(request, 400, f"invalid request: {problems}")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return answer(request, 500, f"internal error: {type(error).__name__}")
