"""Prices from CSV files: Yahoo-style exports (Date, Open, High, Low, Close, Adj Close,
Volume), the same without Adj Close, or a plain ``Date,Close``.

Plain ``csv`` + numpy rather than pandas: the daemon reads these files on a
request path and must start without importing pandas.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import os
import re
from pathlib import Path

from .cleaning import RawRow, clean
from .errors import EmptyDataError, SourceUnavailableError, UnknownSymbolError
from .series import PriceSeries

ADJ_CLOSE = "Adj Close"
CLOSE = "Close"
# A symbol names a file in a directory: letters, digits and the few marks tickers use
# ("^BVSP", "BRL=X", "PETR4.SA"); never a path separator or "..".
_SYMBOL = re.compile(r"^[A-Za-z0-9^=_-][A-Za-z0-9^=._-]{0,31}$")


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None  # "", "null" (Yahoo's missing value), or garbage: all "missing"
    return None if math.isnan(value) else value


def _date(text: str, where: str) -> dt.date:
    # Yahoo writes "2018-01-02"; pandas' to_csv of a yfinance frame writes "2018-01-02 00:00:00-02:00".
    try:
        return dt.date.fromisoformat(text.strip()[:10])
    except ValueError:
        raise SourceUnavailableError(f"{where}: {text!r} is not a date (expected YYYY-MM-DD)") from None


def choose_column(header: list[str], adjusted: bool = True, column: str | None = None) -> str:
    """The close column to read: ``column`` if given, else Adj Close when ``adjusted`` and present, else Close."""
    if column is not None:
        wanted = column
    elif adjusted and ADJ_CLOSE in header:
        wanted = ADJ_CLOSE
    else:
        wanted = CLOSE
    if wanted not in header:
        raise SourceUnavailableError(f"no {wanted!r} column (columns: {', '.join(header)})")
    return wanted


def read_rows(path: Path, *, adjusted: bool = True, column: str | None = None) -> tuple[list[RawRow], str]:
    """The raw rows of one price file and the name of the column the closes came from."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = [name.strip() for name in next(reader, [])]
            if not header:
                raise EmptyDataError(f"{path}: the file is empty")
            try:
                chosen = choose_column(header, adjusted, column)
            except SourceUnavailableError as exc:
                raise SourceUnavailableError(f"{path}: {exc}") from None
            date_at = next((i for i, name in enumerate(header) if name.lower() in ("date", "datetime")), None)
            if date_at is None:
                raise SourceUnavailableError(f"{path}: no Date column (columns: {', '.join(header)})")
            close_at = header.index(chosen)
            volume_at = header.index("Volume") if "Volume" in header else None
            rows = []
            for line_no, record in enumerate(reader, start=2):
                if not record or not any(field.strip() for field in record):
                    continue
                if len(record) < len(header):
                    record = record + [""] * (len(header) - len(record))
                rows.append(
                    RawRow(
                        date=_date(record[date_at], f"{path}:{line_no}"),
                        close=_number(record[close_at]),
                        volume=None if volume_at is None else _number(record[volume_at]),
                    )
                )
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise SourceUnavailableError(f"{path}: cannot read prices ({exc})") from exc
    return rows, chosen


def _text(value: float | None) -> str:
    return "" if value is None else repr(float(value))  # repr: shortest exact round-trip


def write_rows(path: Path, rows: list[RawRow]) -> None:
    """Write rows as ``Date,Close,Volume`` atomically (a reader never sees half a file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["Date", CLOSE, "Volume"])
        for row in rows:
            writer.writerow(
                [row.date.isoformat(), _text(row.close), _text(row.volume)]
            )
    os.replace(tmp, path)


def read_series(
    path: Path, symbol: str, *, adjusted: bool = True, column: str | None = None, source: str | None = None
) -> PriceSeries:
    rows, chosen = read_rows(path, adjusted=adjusted, column=column)
    return clean(symbol, rows, source or f"csv:{path}", column=chosen)


def _window(series: PriceSeries, start: dt.date | None, end: dt.date | None) -> PriceSeries:
    if start is None and end is None:
        return series
    out = series.between(start, end)
    if not len(out):
        raise EmptyDataError(
            f"{series.symbol}: {series.source} has no rows between {start or 'the start'} and {end or 'the end'} "
            f"(it covers {series.start} .. {series.end})"
        )
    return out


class CsvFileSource:
    """One CSV file serving one symbol (the file name without ``.csv`` unless given)."""

    name = "csv"

    def __init__(self, path: str | Path, symbol: str | None = None, *, adjusted: bool = True, column: str | None = None):
        self.path = Path(path)
        self.symbol = symbol or self.path.name.removesuffix(".csv")
        self.adjusted = adjusted
        self.column = column

    def fetch(self, symbol: str, start: dt.date | None = None, end: dt.date | None = None) -> PriceSeries:
        if symbol.upper() != self.symbol.upper():
            raise UnknownSymbolError(f"{symbol}: this source only has {self.symbol} ({self.path})")
        if not self.path.is_file():
            raise SourceUnavailableError(f"{self.path}: no such price file")
        return _window(read_series(self.path, self.symbol, adjusted=self.adjusted, column=self.column), start, end)


class CsvDirectorySource:
    """A directory of ``<SYMBOL>.csv`` files (offline boxes, tests)."""

    name = "csv"

    def __init__(self, directory: str | Path, *, adjusted: bool = True):
        self.directory = Path(directory)
        self.adjusted = adjusted

    def path_for(self, symbol: str) -> Path:
        if not _SYMBOL.match(symbol):
            raise UnknownSymbolError(f"{symbol!r} is not a valid symbol")
        return self.directory / f"{symbol}.csv"

    def fetch(self, symbol: str, start: dt.date | None = None, end: dt.date | None = None) -> PriceSeries:
        path = self.path_for(symbol)
        if not self.directory.is_dir():
            raise SourceUnavailableError(f"{self.directory}: the price directory does not exist")
        if not path.is_file():
            if path.exists():  # a directory or a named pipe: never opened, as reading a pipe blocks
                raise SourceUnavailableError(f"{path}: not a regular file")
            raise UnknownSymbolError(f"{symbol}: no price file {path.name} in {self.directory}")
        return _window(read_series(path, symbol, adjusted=self.adjusted), start, end)
