"""msgspec JSON in and out of aiohttp: request bodies decoded and validated in one pass,
responses encoded straight from Structs."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from aiohttp import web

from .errors import MalformedRequest, decode_error

T = TypeVar("T")

_encoder = msgspec.json.Encoder()


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=_encoder.encode(payload), status=status, headers=headers,
                        content_type="application/json")


async def decode_body(request: web.Request, decoder: msgspec.json.Decoder[T]) -> T:
    """The request body as ``decoder``'s type: 400 for malformed JSON, 422 for a wrong value."""
    return decode_json(await request.read(), decoder)


def decode_json(body: bytes, decoder: msgspec.json.Decoder[T]) -> T:
    """``body`` as ``decoder``'s type, or the ApiError to answer: 400 for malformed JSON, 422 for a wrong value."""
    try:
        return decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise decode_error(exc) from None
    except RecursionError:  # msgspec walks nested arrays recursively, even in fields it skips
        raise MalformedRequest("the body is nested too deeply to decode") from None
