"""The aiohttp application: route tables, request metrics and the JSON error contract."""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web
from aiohttp.typedefs import Handler

from . import access, docs, openapi, routes_predict, routes_service
from .batching import BatcherClosedError, QueueFullError
from .errors import ApiError, MalformedRequest, NotFound, Unavailable, error_body, is_v2
from .kserve import routes as kserve_routes
from .metrics import route_label
from .state import STATE, DaemonState

log = logging.getLogger(__name__)

# Status recorded for a request whose client went away before the answer (nginx's convention).
CLIENT_CLOSED = 499


def create_app(state: DaemonState) -> web.Application:
    config = state.config
    # Outermost first: every answer is counted; CORS headers go on error answers too; the token
    # is checked before a body is read, so a client without it cannot make the daemon wait for one.
    app = web.Application(client_max_size=config.max_body_bytes)
    app.middlewares.extend([_record_requests(state), *access.cors_middlewares(config), _render_errors(state),
                            *access.token_middlewares(app, config), _read_body(config.body_timeout)])
    app[STATE] = state
    for module in (routes_service, routes_predict, kserve_routes, openapi, docs):
        app.router.add_routes(module.routes)
    return app


def _record_requests(state: DaemonState):
    """Per request: the Prometheus request metrics, the in-flight count a shutdown drains,
    and a pin on the model set it may use, which a reload waits for before closing it."""
    metrics = state.metrics

    @web.middleware
    async def record_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
        metrics.request_started()
        state.in_flight += 1
        registry = state.registry  # pinned: a reload closes it only after this request
        registry.requests += 1
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:  # only redirects get past the error middleware
            status = exc.status
            raise
        except asyncio.CancelledError:
            status = CLIENT_CLOSED
            raise
        finally:
            state.in_flight -= 1
            registry.requests -= 1
            metrics.request_finished(route_label(request), request.method, status, time.perf_counter() - started)

    return record_requests


def _read_body(timeout: float):
    """Read each request body here, within ``timeout`` seconds, before any handler: a client
    trickling its body would otherwise hold a handler (and its connection) indefinitely, as
    aiohttp's idle timer is off while a request is being handled. Handlers then get the
    body from memory (``request.read()`` returns what was read)."""

    @web.middleware
    async def read_body(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.can_read_body:
            try:
                await asyncio.wait_for(request.read(), timeout)
            except asyncio.TimeoutError:  # not yet the builtin TimeoutError on Python 3.10
                raise ApiError(f"the request body did not arrive within {timeout:g} s (body_timeout)",
                               status=408, code="body_timeout") from None
        return await handler(request)

    return read_body


def _render_errors(state: DaemonState):
    max_body = state.config.max_body_bytes

    @web.middleware
    async def render_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            error = exc
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            error = _from_http(exc, request, max_body)
        except web.RequestPayloadError as exc:  # a body that cannot be read, e.g. a broken gzip stream
            reason = getattr(exc.__cause__, "message", None) or str(exc)
            error = MalformedRequest(f"the request body cannot be read: {reason}")
        except QueueFullError as exc:
            error = Unavailable(f"the daemon is overloaded: {exc}", retry_after=1, code="overloaded")
        except BatcherClosedError:
            error = Unavailable("the daemon is shutting down", retry_after=1, code="shutting_down")
        except Exception:
            log.exception("unhandled error answering %s %s", request.method, request.path)
            error = ApiError("internal error; the daemon's log has the details")
        return web.Response(body=error_body(error, is_v2(request.path)), status=error.status, headers=error.headers,
                            content_type="application/json")

    return render_errors


def _from_http(exc: web.HTTPException, request: web.Request, max_body: int) -> ApiError:
    """aiohttp's own refusals (no route, wrong method, body too large) in our JSON shape."""
    if isinstance(exc, web.HTTPNotFound):
        return NotFound(f"no endpoint at {request.path}; GET / lists the endpoints", code="no_such_endpoint")
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        return ApiError(f"{request.method} is not allowed on {request.path}; allowed: {allowed}",
                        status=405, code="method_not_allowed", headers={"Allow": allowed})
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return ApiError(f"the request body is larger than the {max_body}-byte limit (max_body_bytes)",
                        status=413, code="body_too_large", details={"max_body_bytes": max_body})
    return ApiError(exc.reason, status=exc.status, code=exc.reason.lower().replace(" ", "_"))
