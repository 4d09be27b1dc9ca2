"""Yahoo Finance, faked at the network boundary inside a real daemon process.

A test puts this folder on the daemon's ``PYTHONPATH`` and names a control
directory in ``FAKE_YAHOO_DIR``; Python imports this module at start-up and
replaces ``yfinance.Ticker``. Every ``Ticker(symbol).history(...)`` call then
reads ``FAKE_YAHOO_DIR/mode`` and answers as Yahoo would:

* ``ok``: the closes of ``FAKE_YAHOO_DIR/<symbol>.csv`` (``Date,Close``, see
  ``daemon_harness.write_prices``), or "no timezone found" without that file;
* ``ratelimit``: ``YFRateLimitError``, Yahoo's "Too Many Requests";
* ``hang``: never answers (a connection stuck where yfinance's own timeout does not
  fire), leaving the daemon's worker thread blocked for good.

Everything between this and the HTTP answer is the daemon's own code.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

CONTROL = os.environ.get("FAKE_YAHOO_DIR")

if CONTROL:
    import pandas as pd
    import yfinance
    import yfinance.exceptions as yfe

    class FakeTicker:
        def __init__(self, symbol: str) -> None:
            self.symbol = symbol

        def history(self, **kwargs: object) -> pd.DataFrame:
            control = Path(CONTROL)
            mode = (control / "mode").read_text(encoding="utf-8").strip()
            if mode == "hang":
                threading.Event().wait()
            if mode == "ratelimit":
                raise yfe.YFRateLimitError()
            prices = control / f"{self.symbol}.csv"
            if not prices.is_file():
                raise yfe.YFTzMissingError(self.symbol)
            frame = pd.read_csv(prices, parse_dates=["Date"], index_col="Date")
            frame["Volume"] = 1000.0
            return frame

    yfinance.Ticker = FakeTicker
