"""API errors: one exception type, one JSON shape, the right status.

Handlers raise :class:`ApiError` (or let a known library error through) and the
error middleware in :mod:`lstm_predictor.daemon.app` renders it. Two shapes:

* our routes: ``{"error": {"status", "code", "message", "details"}}``;
* KServe v2 routes (``/v2/...``): the Open Inference Protocol's ``{"error": "<message>"}``.
"""

from __future__ import annotations

from typing import Any

import msgspec

from .schemas import ErrorInfo, ErrorResponse


class ApiError(Exception):
    """An error a client can act on; ``message`` says what to change."""

    status: int = 500
    code: str = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.details = details
        self.headers = headers or {}


class MalformedRequest(ApiError):
    status, code = 400, "malformed_request"


class NotFound(ApiError):
    status, code = 404, "not_found"


class UnknownModelError(NotFound):
    """No served model answers to a name or symbol; the message lists what is served."""

    code = "unknown_model"

    def __init__(self, requested: str, served: list[str]) -> None:
        super().__init__(
            f"no model serves {requested!r}; served: {', '.join(served) or '(none)'}",
            details={"requested": requested, "served": served},
        )


class InvalidInput(ApiError):
    status, code = 422, "invalid_input"


class Unavailable(ApiError):
    """The daemon cannot answer now but may shortly: a 503 with ``Retry-After`` (whole seconds)."""

    status, code = 503, "unavailable"

    def __init__(self, message: str, *, retry_after: float | None, code: str | None = None,
                 details: dict[str, Any] | None = None) -> None:
        headers = {} if retry_after is None else {"Retry-After": str(max(1, round(retry_after)))}
        super().__init__(message, code=code, details=details, headers=headers)


V2_PREFIX = "/v2"


def is_v2(path: str) -> bool:
    """Whether ``path`` belongs to the KServe v2 routes, which answer errors in the protocol's shape."""
    return path == V2_PREFIX or path.startswith(V2_PREFIX + "/")


def error_body(error: ApiError, v2: bool) -> bytes:
    """The JSON body for ``error`` in the shape its route family uses."""
    if v2:
        return msgspec.json.encode({"error": error.message})
    info = ErrorInfo(status=error.status, code=error.code, message=error.message, details=error.details)
    return msgspec.json.encode(ErrorResponse(error=info))


def decode_error(exc: msgspec.DecodeError) -> ApiError:
    """msgspec's verdict on a request body as an ApiError: bad JSON is 400, a wrong value 422.

    msgspec names the offending path (``$.prices[3]``), which is what a person
    needs to fix the request.
    """
    if isinstance(exc, msgspec.ValidationError):
        return InvalidInput(f"invalid request: {exc}")
    return MalformedRequest(f"the body is not valid JSON: {exc}")
