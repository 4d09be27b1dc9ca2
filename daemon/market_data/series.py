"""The one in-memory shape of a price history, whatever source it came from."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DroppedRow:
    """A row the cleaning removed, kept so that nothing disappears silently."""

    date: dt.date
    reason: str


@dataclass(frozen=True, eq=False)  # eq=False: numpy arrays have no single truth value
class PriceSeries:
    """Daily closes, oldest first: sorted, one row per date, every close finite and positive.

    Build it with :func:`~lstm_predictor.daemon.market_data.cleaning.clean`, which
    guarantees those properties and records what it removed in ``dropped``.
    """

    symbol: str
    dates: tuple[dt.date, ...]
    closes: np.ndarray  # float64, one per date
    source: str  # "csv:/path" | "yfinance"
    dropped: tuple[DroppedRow, ...] = ()
    column: str | None = None  # which column the closes came from ("Adj Close", "Close")

    def __post_init__(self) -> None:
        if self.closes.ndim != 1 or len(self.closes) != len(self.dates):
            raise ValueError(f"{len(self.dates)} dates but closes of shape {self.closes.shape}")

    def __len__(self) -> int:
        return len(self.dates)

    @property
    def start(self) -> dt.date:
        return self.dates[0]

    @property
    def end(self) -> dt.date:
        return self.dates[-1]

    def between(self, start: dt.date | None = None, end: dt.date | None = None) -> PriceSeries:
        """The rows dated ``start`` .. ``end``, both inclusive (``None`` = unbounded)."""
        keep = [i for i, d in enumerate(self.dates) if (start is None or d >= start) and (end is None or d <= end)]
        dropped = tuple(r for r in self.dropped if (start is None or r.date >= start) and (end is None or r.date <= end))
        return PriceSeries(
            symbol=self.symbol,
            dates=tuple(self.dates[i] for i in keep),
            closes=self.closes[keep],
            source=self.source,
            dropped=dropped,
            column=self.column,
        )

    def scaled(self, factor: float) -> PriceSeries:
        """Every close multiplied by ``factor`` (a constant rescale, e.g. a later re-adjustment)."""
        return PriceSeries(self.symbol, self.dates, self.closes * factor, self.source, self.dropped, self.column)
