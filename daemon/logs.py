"""The daemon's log set-up: one line per record on stderr (the journal under systemd).

aiohttp logs every request its HTTP parser refuses (a NUL byte in a header, a
header over 8 KiB, a request line that is not HTTP) as an ERROR with a full
traceback, before answering it with a plain 400 and closing the connection.
Such requests are the client's fault and cost the daemon nothing, but any
client could fill the journal with tracebacks by sending them in a loop; they
are logged here as one DEBUG line instead, as aiohttp itself already does for
a bad method on a connection's first request.
"""

from __future__ import annotations

import logging
import sys

from aiohttp.http_exceptions import HttpProcessingError

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class MalformedRequestFilter(logging.Filter):
    """Turns aiohttp's traceback for an unparsable request into one DEBUG line."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        reason = " ".join(str(exc.message).split()).rstrip(" ^")  # aiohttp's spans lines, with a caret
        record.msg, record.args = "%s: %d %s", (record.getMessage(), exc.code, reason)
        record.exc_info = record.exc_text = None
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        # The logger let the record through as an ERROR before this filter ran, and handlers
        # do not ask the logger again: the lowered level is applied here.
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


def configure_logging(level: str) -> None:
    """Log at ``level`` ("debug", "info", ...) to stderr, with malformed requests quietened."""
    logging.basicConfig(level=level.upper(), stream=sys.stderr, format=FORMAT)
    logging.getLogger("aiohttp.server").addFilter(MalformedRequestFilter())
