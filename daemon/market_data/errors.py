"""Market-data errors. One base class, so a caller can catch every source failure at once,
and one subclass per thing a caller may want to do differently (404, back off, 503, refuse)."""

from __future__ import annotations


class MarketDataError(Exception):
    """Prices could not be obtained or used; the message says why in words a person can act on."""


class UnknownSymbolError(MarketDataError):
    """The source does not know this symbol (no such ticker, no such CSV file)."""


class EmptyDataError(MarketDataError):
    """The symbol exists but the source returned no usable rows for the request."""


class RateLimitedError(MarketDataError):
    """The source refused because of too many requests; retry later."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SourceUnavailableError(MarketDataError):
    """The source itself failed (network down, unreadable file, malformed answer)."""


class InsufficientDataError(MarketDataError):
    """A series has fewer rows than a purpose needs (a window, a train/validation/test split)."""

    def __init__(self, message: str, rows: int, needed: int) -> None:
        super().__init__(message)
        self.rows = rows
        self.needed = needed
