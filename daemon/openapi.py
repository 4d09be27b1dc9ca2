"""The OpenAPI 3.1 document, built from the running application's router.

Each handler carries its own description (the :func:`operation` decorator,
next to its route registration) and the msgspec types it decodes and encodes;
the document is assembled from ``app.router`` at the first request. There is
no second list of routes to keep in step: a route without a description is
an error at build time, and a test checks that every route the router serves
is in the document and that the served responses match their schemas.

msgspec's JSON Schema output is JSON Schema 2020-12, which is what OpenAPI
3.1 schema objects are, so the types are used as they are.
"""

from __future__ import annotations

import http
import inspect
import re
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from lstm_predictor import __version__

from .access import requires_token
from .config import Config
from .errors import is_v2
from .kserve.schemas import V2Error
from .kserve.tensors import HEADER_LENGTH
from .schemas import ErrorResponse
from .state import STATE

OPENAPI_VERSION = "3.1.0"
REF_TEMPLATE = "#/components/schemas/{name}"

Handler = TypeVar("Handler", bound=Callable[..., Any])

# Media types a response may have besides JSON, each with its schema.
BINARY_TENSORS = "application/octet-stream"
_BINARY_SCHEMA = {
    "type": "string",
    "contentMediaType": BINARY_TENSORS,
    "description": (
        "Binary tensor data extension: the JSON object (its length in the "
        "Inference-Header-Content-Length header), then each binary tensor's bytes, "
        "little-endian, row-major, in the order the tensors are listed."
    ),
}
# The binary tensor extension's header, on requests and answers that carry binary tensors.
_HEADER_LENGTH = {
    "description": "Length in bytes of the JSON object that starts an application/octet-stream body",
    "schema": {"type": "integer", "minimum": 0},
}


@dataclass(frozen=True)
class Operation:
    """What the document says about one handler. The handler's docstring gives the
    summary (first line) and description (the rest)."""

    response: type | None = None
    """msgspec type of the 200 JSON body; None with ``media_type`` for other bodies."""
    media_type: str = "application/json"
    request: type | None = None
    request_example: Any = None
    """A JSON request body that works, for "Try it out"."""
    query: type | None = None
    """A msgspec Struct whose fields are the query parameters."""
    errors: tuple[int, ...] = ()
    """Statuses answered with the route family's error object."""
    alternatives: Mapping[int, type] = field(default_factory=dict)
    """Other statuses with a body of their own (e.g. 503 {"ready": false})."""
    binary_tensors: bool = False
    """Request and 200 response may also be application/octet-stream (binary tensor extension)."""
    tags: tuple[str, ...] = ()


def operation(
    *,
    response: type | None = None,
    media_type: str = "application/json",
    request: type | None = None,
    request_example: Any = None,
    query: type | None = None,
    errors: tuple[int, ...] = (),
    alternatives: Mapping[int, type] | None = None,
    binary_tensors: bool = False,
    tags: tuple[str, ...] = (),
) -> Callable[[Handler], Handler]:
    """Attach the OpenAPI description to a route handler (the handler itself is returned unchanged)."""
    op = Operation(
        response, media_type, request, request_example, query, tuple(errors), dict(alternatives or {}),
        binary_tensors, tags,
    )

    def attach(handler: Handler) -> Handler:
        handler.__openapi__ = op  # type: ignore[attr-defined]
        return handler

    return attach


def described(handler: Callable[..., Any]) -> Operation | None:
    return getattr(handler, "__openapi__", None)


# What reading a request body may answer. The app reads every request's body before its route
# sees it (so that none can take longer than body_timeout), even a GET's: any operation may find
# a body unreadable (a broken gzip stream), not arrived in time (body_timeout), or too large.
BODY_ERRORS = (400, 408, 413)

OPENAPI_PATH = "/openapi.json"
_PATH_PARAM = re.compile(r"\{(\w+)(?::[^}]*)?\}")


class UndescribedRoute(RuntimeError):
    """A route whose handler has no :func:`operation` description."""


def error_schema(path: str) -> type:
    """The error object a path answers with: the protocol's for v2, the daemon's elsewhere
    (the error middleware's own rule, so the document cannot disagree with the answers)."""
    return V2Error if is_v2(path) else ErrorResponse


BEARER_SCHEME = "bearerAuth"
_SECURITY_SCHEMES = {
    BEARER_SCHEME: {
        "type": "http",
        "scheme": "bearer",
        "description": "The token in the daemon's token file (token_file), sent as Authorization: Bearer <token>.",
    }
}


def build_document(app: web.Application, config: Config | None = None) -> dict[str, Any]:
    """The OpenAPI document of every route ``app`` serves; with ``config``, the routes its
    token protects say so (security requirement and 401 answer)."""
    entries = _described_routes(app)
    types: list[Any] = []
    for path, _, op in entries:
        types.extend(t for t in (op.request, op.response, *op.alternatives.values(), error_schema(path)) if t)
        if op.query is not None:
            types.extend(f.type for f in msgspec.structs.fields(op.query))
    types = list(dict.fromkeys(types))
    refs, components = msgspec.json.schema_components(types, ref_template=REF_TEMPLATE)
    ref = dict(zip(types, refs))

    paths: dict[str, dict[str, Any]] = {}
    for path, (method, handler), op in entries:
        obj = paths.setdefault(path, {})[method.lower()] = _operation_object(path, method, handler, op, ref)
        if config is not None and requires_token(config, path):
            obj["security"] = [{BEARER_SCHEME: []}]
            unauthorized = _error_response(401, ref[error_schema(path)])
            obj["responses"] = dict(sorted({**obj["responses"], "401": unauthorized}.items()))
    components: dict[str, Any] = {"schemas": components}
    if config is not None and config.token is not None:
        components["securitySchemes"] = _SECURITY_SCHEMES
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "lstm-predictor",
            "version": __version__,
            "description": (
                "Next-close predictions from an LSTM served with onnxruntime: the daemon's own API, "
                "and the KServe Open Inference Protocol (v2) for standard inference clients."
            ),
        },
        "paths": paths,
        "components": components,
    }


def _described_routes(app: web.Application) -> list[tuple[str, tuple[str, Callable[..., Any]], Operation]]:
    """(path template, (method, handler), description) of each route; HEAD is GET's twin and not listed."""
    entries = []
    for route in app.router.routes():
        if route.method == "HEAD" or route.resource is None:
            continue
        path = route.resource.canonical
        op = described(route.handler)
        if op is None:
            raise UndescribedRoute(
                f"{route.method} {path} ({route.handler.__qualname__}) has no OpenAPI description: "
                "decorate the handler with lstm_predictor.daemon.openapi.operation"
            )
        entries.append((path, (route.method, route.handler), op))
    return entries


def _operation_object(
    path: str, method: str, handler: Callable[..., Any], op: Operation, ref: Mapping[Any, Any]
) -> dict[str, Any]:
    summary, _, description = (inspect.getdoc(handler) or "").partition("\n\n")
    slug = re.sub(r"[^A-Za-z0-9]+", "_", _PATH_PARAM.sub(r"\1", path)).strip("_") or "root"
    obj: dict[str, Any] = {"operationId": f"{method.lower()}_{slug}", "summary": _plain(summary)}
    if description.strip():
        obj["description"] = description.strip()
    if op.tags:
        obj["tags"] = list(op.tags)
    params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PATH_PARAM.findall(path)
    ]
    if op.query is not None:
        params += [_query_parameter(f, ref[f.type]) for f in msgspec.structs.fields(op.query)]
    if op.binary_tensors:
        params.append({"name": HEADER_LENGTH, "in": "header", "required": False, **_HEADER_LENGTH})
    if params:
        obj["parameters"] = params
    if op.request is not None:
        content: dict[str, Any] = {"application/json": {"schema": ref[op.request]}}
        if op.request_example is not None:
            content["application/json"]["example"] = op.request_example
        if op.binary_tensors:
            content[BINARY_TENSORS] = {"schema": _BINARY_SCHEMA}
        obj["requestBody"] = {"required": True, "content": content}

    responses: dict[str, Any] = {"200": {"description": "OK", "content": _content(op.media_type, op.response, ref)}}
    if op.binary_tensors:
        responses["200"]["content"][BINARY_TENSORS] = {"schema": _BINARY_SCHEMA}
        responses["200"]["headers"] = {HEADER_LENGTH: _HEADER_LENGTH}
    for status, body in op.alternatives.items():
        responses[str(status)] = {"description": http.HTTPStatus(status).phrase, "content": _content("application/json", body, ref)}
    errors = ref[error_schema(path)]
    for status in sorted({*op.errors, *BODY_ERRORS}):
        responses[str(status)] = _error_response(status, errors)
    obj["responses"] = dict(sorted(responses.items()))
    return obj


# A 503 error says when to try again, unless nothing suggests a time (errors.Unavailable).
_RETRY_AFTER = {"Retry-After": {
    "description": "Whole seconds to wait before trying again; absent when no retry time is known",
    "schema": {"type": "integer", "minimum": 1},
}}


def _error_response(status: int, schema: dict[str, Any]) -> dict[str, Any]:
    response: dict[str, Any] = {"description": http.HTTPStatus(status).phrase,
                                "content": {"application/json": {"schema": schema}}}
    if status == http.HTTPStatus.SERVICE_UNAVAILABLE:
        response["headers"] = _RETRY_AFTER
    return response


def _plain(text: str) -> str:
    """A summary is shown as plain text (descriptions are Markdown): one line, no code marks."""
    return " ".join(text.replace("`", "").split())


def _query_parameter(f: msgspec.structs.FieldInfo, schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter from a Struct field. An optional field's ``null`` is dropped: an
    absent parameter is how a query string says "none"."""
    options = schema.get("anyOf", ())
    if f.default is None and len(options) == 2 and {"type": "null"} in options:
        schema = next(o for o in options if o != {"type": "null"})
    param = {"name": f.encode_name, "in": "query", "required": f.required, "schema": schema}
    if "description" in schema:
        param["description"] = schema["description"]
    return param


def _content(media_type: str, body: type | None, ref: Mapping[Any, Any]) -> dict[str, Any]:
    if body is not None:
        return {media_type: {"schema": ref[body]}}
    if media_type == "application/json":
        return {media_type: {"schema": {"type": "object"}}}
    return {media_type: {"schema": {"type": "string", "contentMediaType": media_type}}}


routes = web.RouteTableDef()
# The document depends only on an app's routes, fixed once it serves, and building it
# takes about 10 ms of the event loop: each app builds it once, on the first request.
_documents: weakref.WeakKeyDictionary[web.Application, bytes] = weakref.WeakKeyDictionary()


@routes.get(OPENAPI_PATH)
@operation(tags=("Documentation",))
async def openapi_document(request: web.Request) -> web.Response:
    """This OpenAPI 3.1 document, built from the running daemon's routes."""
    body = _documents.get(request.app)
    if body is None:
        document = build_document(request.app, request.app[STATE].config)
        body = _documents[request.app] = msgspec.json.encode(document)
    return web.Response(body=body, content_type="application/json")
