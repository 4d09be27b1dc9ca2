"""The one cleaning step every source goes through, so CSV files, the yfinance cache and
a fresh download all yield series with the same guarantees (see :class:`PriceSeries`)."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from typing import NamedTuple

import numpy as np

from .errors import EmptyDataError, InsufficientDataError
from .series import DroppedRow, PriceSeries


class RawRow(NamedTuple):
    """One row as a source read it, before any judgement. ``None`` = missing or unreadable."""

    date: dt.date
    close: float | None
    volume: float | None = None


def _problem(row: RawRow) -> str | None:
    if row.close is None or math.isnan(row.close):
        return "missing close"
    if row.close <= 0.0 or math.isinf(row.close):
        return f"non-positive or infinite close ({row.close!r})"
    # A zero-volume row is a day without trading (Yahoo pads exchange holidays
    # with the previous close): a fake day would teach the model a fake zero return.
    if row.volume is not None and row.volume == 0:
        return "zero volume (no trading that day)"
    return None


def clean(symbol: str, rows: Iterable[RawRow], source: str, column: str | None = None) -> PriceSeries:
    """Rows in any order -> a sorted, de-duplicated series of positive closes.

    Bad rows are dropped first and reported; among rows sharing a date the last
    one read wins (a later line in a file is a correction of an earlier one).
    Raises EmptyDataError when nothing usable remains.
    """
    dropped: list[DroppedRow] = []
    by_date: dict[dt.date, float] = {}
    for row in rows:
        reason = _problem(row)
        if reason is not None:
            dropped.append(DroppedRow(row.date, reason))
            continue
        if row.date in by_date:
            dropped.append(DroppedRow(row.date, "duplicate date (the last row for this date was kept)"))
        by_date[row.date] = float(row.close)  # type: ignore[arg-type]
    if not by_date:
        detail = f" ({len(dropped)} rows dropped: {dropped[0].reason}, ...)" if dropped else ""
        raise EmptyDataError(f"{symbol}: {source} has no usable price rows{detail}")
    dates = tuple(sorted(by_date))
    return PriceSeries(
        symbol=symbol,
        dates=dates,
        closes=np.fromiter((by_date[d] for d in dates), dtype=np.float64, count=len(dates)),
        source=source,
        dropped=tuple(sorted(dropped, key=lambda r: r.date)),
        column=column,
    )


def require_length(series: PriceSeries, needed: int, purpose: str) -> PriceSeries:
    """Return ``series`` if it has at least ``needed`` rows, else refuse saying how many it has."""
    if len(series) < needed:
        span = f" ({series.start} .. {series.end})" if len(series) else ""
        raise InsufficientDataError(
            f"{series.symbol}: {purpose} needs at least {needed} daily closes, "
            f"but {series.source} has only {len(series)}{span}",
            rows=len(series),
            needed=needed,
        )
    return series
