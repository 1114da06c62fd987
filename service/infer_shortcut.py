"""Inference requests straight to their endpoint, past the framework's routing.

FastAPI routes a request through its router (every route's pattern tried in turn), its
exception and exit-stack middlewares and its request handler before the endpoint runs. An
inference endpoint needs none of it: it takes only its path's parameters and the request,
reads and checks its own body, and returns a finished `Response`. For a lone example that work
is a large part of the request's time at the server (`docs/history/request-path/`).

`InferShortcut` is the innermost of the app's own middlewares, so every guard before it has
already run (Host, CORS, cross-site origin, form bodies). A POST that one of its routes
matches (by that route's own `matches`: the same patterns and parameters as the router's) has
its scope completed as the router completes it (route, endpoint, path parameters) and its
endpoint called with them. An error the app has a handler for (`ApiError`, HTTP exceptions) is
answered by that handler, as the exception middleware would; any other exception goes on to the
server-error handler, as it would from the router. Every other request goes to the router
unchanged, including a GET to an inference path (405 from the router).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send


def _endpoint_takes_only_path_and_request(route: APIRoute) -> bool:
    """Whether calling the endpoint with its path's parameters and the request is all FastAPI
    would do: no query, header or body parameters to validate, no dependencies."""
    parameters = set(inspect.signature(route.endpoint).parameters)
    return (parameters == set(route.param_convertors) | {"request"}
            and not route.dependencies)


def exception_handler(handlers: dict, error: Exception) -> Callable | None:
    """The app's handler for `error`, as Starlette's exception middleware finds it (by status
    code for an HTTP exception, else by class along its MRO); None for what only the
    server-error handler answers (a handler for Exception or 500)."""
    if isinstance(error, HTTPException) and error.status_code in handlers:
        return handlers[error.status_code]
    for cls in type(error).__mro__:
        if cls is Exception:
            return None
        if cls in handlers:
            return handlers[cls]
    return None


class InferShortcut:
    """ASGI middleware: a POST one of `routes` matches goes straight to its endpoint."""

    def __init__(self, app: ASGIApp, routes: Sequence[APIRoute]) -> None:
        for route in routes:
            if not _endpoint_takes_only_path_and_request(route):
                raise ValueError(f"{route.path}: its endpoint takes more than its path's "
                                 "parameters and the request, which only FastAPI's request "
                                 "handler validates; route it normally")
        self.app = app
        self.routes = tuple(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            for route in self.routes:
                match, child = route.matches(scope)
                if match is Match.FULL:
                    scope.update(child)  # in place, as the router does: error handlers see it
                    await self._answer(route, scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def _answer(self, route: APIRoute, scope: Scope, receive: Receive,
                      send: Send) -> None:
        request = Request(scope, receive, send)
        try:
            response = await route.endpoint(request=request, **scope["path_params"])
        except Exception as error:
            handler = exception_handler(scope["app"].exception_handlers, error)
            if handler is None:
                raise
            response = handler(request, error)
            if inspect.isawaitable(response):
                response = await response
        await response(scope, receive, send)
