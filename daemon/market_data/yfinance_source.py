"""Prices from Yahoo Finance through ``yfinance``, with an on-disk cache.

yfinance pulls in pandas (about a second of imports), so it is imported on
the first fetch, not when the daemon starts. ``auto_adjust`` is always passed
explicitly: yfinance changed its default once (0.2.51), and a model must be
served the same kind of prices it was trained on.

The cache holds what Yahoo answered, as ``Date,Close,Volume`` CSV, and is read
back through the same parser and cleaning as any CSV file. A request whose
range ended before today cannot change and is kept for good; a request that
reaches today is reused for ``fresh_for`` seconds only.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
from pathlib import Path
from typing import Any

from .cleaning import RawRow, clean
from .csv_source import ADJ_CLOSE, CLOSE, read_rows, write_rows
from .errors import (
    EmptyDataError,
    RateLimitedError,
    SourceUnavailableError,
    UnknownSymbolError,
)
from .series import PriceSeries

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9^=._-]")


def _yfinance() -> Any:
    import yfinance

    # Without this yfinance logs an unknown symbol or a failed request and returns an empty
    # frame; raising is the documented way to learn which of those happened.
    yfinance.config.debug.hide_exceptions = False
    return yfinance


class YFinanceSource:
    name = "yfinance"

    def __init__(
        self, cache_dir: str | Path | None = None, auto_adjust: bool = True, *, fresh_for: float = 3600.0, timeout: float = 10.0
    ) -> None:
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.auto_adjust = auto_adjust
        self.fresh_for = fresh_for
        self.timeout = timeout

    def fetch(self, symbol: str, start: dt.date | None = None, end: dt.date | None = None) -> PriceSeries:
        """Daily closes from ``start`` to ``end``, both inclusive (``start=None``: all history; ``end=None``: today).

        Blocking (network): the daemon calls it off its event loop.
        """
        if not symbol or _UNSAFE.search(symbol):
            raise UnknownSymbolError(f"{symbol!r} is not a valid symbol")
        cached = self._cache_path(symbol, start, end)
        if cached is not None and self._is_fresh(cached, end):
            rows, _ = read_rows(cached, column=CLOSE)
        else:
            rows = self._download(symbol, start, end)
            if cached is not None:
                self._store(cached, rows)
        # With auto_adjust=True Yahoo's "Close" is the dividend-adjusted close: name it as a CSV export would.
        return clean(symbol, rows, self.name, column=ADJ_CLOSE if self.auto_adjust else CLOSE)

    def _cache_path(self, symbol: str, start: dt.date | None, end: dt.date | None) -> Path | None:
        if self.cache_dir is None:
            return None
        kind = "adjusted" if self.auto_adjust else "raw"
        return self.cache_dir / f"{symbol}_{start or 'all'}_{end or 'today'}_{kind}.csv"

    @staticmethod
    def _store(path: Path, rows: list[RawRow]) -> None:
        # The cache only spares a later download: one that cannot be written (full disk,
        # wrong permissions) must not fail the download that has just succeeded.
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_rows(path, rows)
        except OSError as exc:
            log.warning("cannot write the yfinance cache file %s (%s); serving the download uncached", path, exc)

    def _is_fresh(self, path: Path, end: dt.date | None) -> bool:
        try:
            age = time.time() - path.stat().st_mtime
        except OSError:  # not cached yet, or a cache directory that is not one: download
            return False
        closed = end is not None and end < dt.date.today()
        return closed or age < self.fresh_for

    def _download(self, symbol: str, start: dt.date | None, end: dt.date | None) -> list[RawRow]:
        yf = _yfinance()
        exc_mod = yf.exceptions
        span = {"period": "max"} if start is None and end is None else {
            "start": (start or dt.date(1970, 1, 1)).isoformat(),
            # yfinance's end is exclusive; ours is inclusive.
            "end": None if end is None else (end + dt.timedelta(days=1)).isoformat(),
        }
        try:
            frame = yf.Ticker(symbol).history(
                **span, interval="1d", auto_adjust=self.auto_adjust, actions=False, timeout=self.timeout
            )
        except exc_mod.YFRateLimitError as exc:
            raise RateLimitedError(f"{symbol}: Yahoo Finance is rate limiting requests; try again later") from exc
        except exc_mod.YFPricesMissingError as exc:
            raise EmptyDataError(f"{symbol}: Yahoo Finance has no prices for this request ({exc})") from exc
        except exc_mod.YFTickerMissingError as exc:  # includes "no timezone found": Yahoo does not know it
            raise UnknownSymbolError(f"{symbol}: Yahoo Finance does not know this symbol ({exc})") from exc
        except Exception as exc:  # network errors come from requests/curl_cffi, whose types vary by version
            raise SourceUnavailableError(f"{symbol}: Yahoo Finance request failed ({type(exc).__name__}: {exc})") from exc
        if frame is None or len(frame) == 0 or CLOSE not in frame:
            raise EmptyDataError(f"{symbol}: Yahoo Finance returned no rows for {_describe(start, end)}")
        volumes = frame["Volume"] if "Volume" in frame else None
        return [
            RawRow(
                date=stamp.date(),
                close=float(close),
                volume=None if volumes is None else float(volumes.iloc[i]),
            )
            for i, (stamp, close) in enumerate(frame[CLOSE].items())
        ]


def _describe(start: dt.date | None, end: dt.date | None) -> str:
    return f"{start or 'all history'} .. {end or 'today'}"
