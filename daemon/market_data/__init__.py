"""Market data: one way to read daily closes in the project, for training and the daemon alike.

Sources (CSV files, yfinance) all return a cleaned :class:`PriceSeries` and
raise :class:`MarketDataError` subclasses. TensorFlow-free and pandas-free at
import time (yfinance, which needs pandas, is imported on first use).
"""

from .adjust import Adjustment, back_adjust, detect_jumps
from .cleaning import RawRow, clean, require_length
from .csv_source import ADJ_CLOSE, CLOSE, CsvDirectorySource, CsvFileSource
from .errors import (
    EmptyDataError,
    InsufficientDataError,
    MarketDataError,
    RateLimitedError,
    SourceUnavailableError,
    UnknownSymbolError,
)
from .series import DroppedRow, PriceSeries
from .source import PriceSource
from .yfinance_source import YFinanceSource

__all__ = [
    "ADJ_CLOSE",
    "CLOSE",
    "Adjustment",
    "CsvDirectorySource",
    "CsvFileSource",
    "DroppedRow",
    "EmptyDataError",
    "InsufficientDataError",
    "MarketDataError",
    "PriceSeries",
    "PriceSource",
    "RateLimitedError",
    "RawRow",
    "SourceUnavailableError",
    "UnknownSymbolError",
    "YFinanceSource",
    "back_adjust",
    "clean",
    "detect_jumps",
    "require_length",
]
