"""What the daemon and training need from a price source, and nothing more."""

from __future__ import annotations

import datetime as dt
from typing import Protocol

from .series import PriceSeries


class PriceSource(Protocol):
    name: str

    def fetch(self, symbol: str, start: dt.date | None = None, end: dt.date | None = None) -> PriceSeries:
        """Daily closes ``start`` .. ``end`` (inclusive), cleaned. Blocking; raises MarketDataError subclasses."""
        ...
