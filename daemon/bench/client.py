"""The bench's HTTP sessions, each carrying the daemon's bearer token when it needs one.

Every request the bench makes (the load, the probes before it, the ``/metrics``
scrapes and memory readings) goes through a session opened here, so none can
go out without the token, and the token is set in one place only.
"""

from __future__ import annotations

from typing import Any

import aiohttp


def auth_headers(token: str | None) -> dict[str, str]:
    """The headers every request of the bench carries: ``Authorization: Bearer`` if there is a token."""
    return {"Authorization": f"Bearer {token}"} if token else {}


def session(token: str | None, **kwargs: Any) -> aiohttp.ClientSession:
    """An aiohttp session (``kwargs`` as for :class:`aiohttp.ClientSession`) that sends the token on every request."""
    return aiohttp.ClientSession(headers=auth_headers(token), **kwargs)
