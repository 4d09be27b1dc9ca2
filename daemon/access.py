"""Who may call the daemon: the bearer token and the browser origins (CORS).

Both are off by default, and then the daemon listens on loopback only unless
told otherwise (the configuration refuses anything else, see
:func:`lstm_predictor.daemon.config.is_loopback`). With a token file, every
route except liveness (and ``/metrics`` unless ``metrics_auth``) requires
``Authorization: Bearer <token>``, so a load balancer's probe or a scraper needs
no secret. With ``cors_origins``, browsers on those origins may call the API:
preflights are answered and responses carry ``Access-Control-Allow-Origin``.
"""

from __future__ import annotations

import hmac
import logging

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

from .config import Config, ConfigError, read_token
from .errors import ApiError
from .metrics import route_label

# Liveness must answer without the secret: load balancers, Docker and Kubernetes probes carry none.
OPEN_PATHS = frozenset({"/health", "/v2/health/live"})
METRICS_PATH = "/metrics"
BEARER = "bearer"
# Request headers a browser may send cross-origin beyond the safelisted ones.
CORS_REQUEST_HEADERS = "Authorization, Content-Type, Content-Encoding, Inference-Header-Content-Length"
# Response headers a browser script may read beyond the safelisted ones.
CORS_EXPOSED_HEADERS = "Retry-After, WWW-Authenticate, Inference-Header-Content-Length"
CORS_MAX_AGE = "600"

log = logging.getLogger(__name__)


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={hdrs.WWW_AUTHENTICATE: "Bearer"})


def requires_token(config: Config, route: str) -> bool:
    """Whether a request to ``route`` (its template, see :func:`route_label`) needs the token.

    Decisions go by the matched route, never by the raw path, so no spelling of a URL
    reaches a protected handler under an open route's name; a path no route serves needs
    the token too, so a client without it cannot probe which paths exist."""
    if config.token is None:
        return False
    if route == METRICS_PATH:
        return config.metrics_auth
    return route not in OPEN_PATHS


class BearerToken:
    """The token requests must carry, read from ``config.token_file`` at start and again by
    :meth:`reload` (on SIGHUP), so a token can be rotated without dropping connections."""

    def __init__(self, config: Config, token: str) -> None:
        self._config = config
        self._expected = token.encode("ascii")

    def matches(self, credentials: str) -> bool:
        # Constant time: how long the comparison takes says nothing about how much matched.
        return hmac.compare_digest(credentials.encode("utf-8", "replace"), self._expected)

    def reload(self) -> None:
        """Read the token file again; a file that is no longer usable keeps the current token."""
        assert self._config.token_file is not None
        try:
            token = read_token(self._config.token_file, self._config.origins["token_file"])
        except ConfigError as exc:
            log.error("keeping the current bearer token: %s", exc)
            return
        if token.encode("ascii") != self._expected:
            self._expected = token.encode("ascii")
            log.info("bearer token re-read from %s", self._config.token_file)


TOKEN = web.AppKey("bearer_token", BearerToken)


def token_middlewares(app: web.Application, config: Config) -> list[Middleware]:
    """The bearer-token check when a token file is configured; its token is ``app[TOKEN]``."""
    if config.token is None:
        return []
    app[TOKEN] = token = BearerToken(config, config.token)
    return [_require_token(config, token)]


def reload_token(app: web.Application) -> None:
    """Re-read the token file of ``app``'s token check, if it has one."""
    if TOKEN in app:
        app[TOKEN].reload()


def _require_token(config: Config, token: BearerToken) -> Middleware:
    @web.middleware
    async def require_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if requires_token(config, route_label(request)):
            scheme, _, credentials = request.headers.get(hdrs.AUTHORIZATION, "").strip().partition(" ")
            if scheme.lower() != BEARER or not credentials.strip():
                raise Unauthorized("this endpoint requires an Authorization: Bearer <token> header")
            if not token.matches(credentials.strip()):
                raise Unauthorized("the bearer token is not valid")
        return await handler(request)

    return require_token


def cors_middlewares(config: Config) -> list[Middleware]:
    """The CORS middleware when ``cors_origins`` names any origin."""
    return [_cors(config.cors_origins)] if config.cors_origins else []


def _cors(origins: tuple[str, ...]) -> Middleware:
    any_origin = "*" in origins

    def allowed(origin: str | None) -> str | None:
        """The Access-Control-Allow-Origin value for ``origin``, or None when it is not allowed."""
        if origin is None:
            return None
        if any_origin:
            return "*"
        return origin if origin.lower() in origins else None

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        allow_origin = allowed(request.headers.get(hdrs.ORIGIN))
        if allow_origin is None:
            return await handler(request)
        unmatched = request.match_info.http_exception
        if (request.method == hdrs.METH_OPTIONS and hdrs.ACCESS_CONTROL_REQUEST_METHOD in request.headers
                and isinstance(unmatched, web.HTTPMethodNotAllowed)):
            # A preflight for a route that exists (OPTIONS itself is served by no route).
            response: web.StreamResponse = web.Response(status=204, headers={
                hdrs.ACCESS_CONTROL_ALLOW_METHODS: ", ".join(sorted(unmatched.allowed_methods)),
                hdrs.ACCESS_CONTROL_ALLOW_HEADERS: CORS_REQUEST_HEADERS,
                hdrs.ACCESS_CONTROL_MAX_AGE: CORS_MAX_AGE,
            })
        else:
            response = await handler(request)
            response.headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = CORS_EXPOSED_HEADERS
        response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = allow_origin
        if not any_origin:
            response.headers.add(hdrs.VARY, hdrs.ORIGIN)  # caches must not serve one origin's answer to another
        return response

    return cors
