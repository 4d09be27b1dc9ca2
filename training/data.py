"""Loading the price series a model is trained and evaluated on, and recording how.

Training writes this recipe into the bundle's metadata (``data``) and
evaluation replays it, so both see the same closes: same source and column,
same period, the same split-like jumps back-adjusted, the same constant scale.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lstm_predictor.daemon.market_data import (
    ADJ_CLOSE,
    Adjustment,
    CsvFileSource,
    PriceSeries,
    YFinanceSource,
    back_adjust,
    detect_jumps,
)

SplitAdjust = Literal["auto", "none"]
DEFAULT_CACHE = Path.home() / ".cache" / "lstm-predictor" / "yfinance"


@dataclass(frozen=True)
class DataSpec:
    symbol: str
    csv: Path | None = None  # None: yfinance
    start: dt.date | None = None
    end: dt.date | None = None
    adjusted: bool = True  # CSV: Adj Close when present; yfinance: auto_adjust
    scale: float = 1.0
    # "auto": detect split-like jumps in unadjusted closes; "none"; or explicit dates.
    split_adjust: SplitAdjust | tuple[dt.date, ...] = "auto"
    cache_dir: Path = field(default=DEFAULT_CACHE)


@dataclass(frozen=True)
class LoadedData:
    spec: DataSpec
    series: PriceSeries
    adjustments: tuple[Adjustment, ...]

    @property
    def source_label(self) -> str:
        return f"csv:{self.spec.csv.name}" if self.spec.csv is not None else "yfinance"

    def metadata(self) -> dict[str, Any]:
        """The ``data`` section of a bundle's metadata (splits are added by the caller)."""
        s = self.series
        return {
            "source": self.source_label,
            "auto_adjust": s.column == ADJ_CLOSE,
            "column": s.column,
            "scale": self.spec.scale,
            "period": {"start": s.start.isoformat(), "end": s.end.isoformat()},
            "rows": len(s),
            "dropped": [{"date": r.date.isoformat(), "reason": r.reason} for r in s.dropped],
            "adjustments": [
                {"date": a.date.isoformat(), "factor": round(a.factor, 6), "reason": a.reason} for a in self.adjustments
            ],
        }


def load(spec: DataSpec) -> LoadedData:
    if spec.csv is not None:
        series = CsvFileSource(spec.csv, spec.symbol, adjusted=spec.adjusted).fetch(spec.symbol, spec.start, spec.end)
    else:
        series = YFinanceSource(spec.cache_dir, auto_adjust=spec.adjusted).fetch(spec.symbol, spec.start, spec.end)
    adjustments: Sequence[Adjustment] = ()
    if spec.split_adjust == "auto" and series.column != ADJ_CLOSE:
        series, adjustments = back_adjust(series, detect_jumps(series), "split-like jump (detected)")
    elif isinstance(spec.split_adjust, tuple) and spec.split_adjust:
        series, adjustments = back_adjust(series, spec.split_adjust, "split-like jump (given)")
    if spec.scale != 1.0:
        series = series.scaled(spec.scale)
    return LoadedData(spec=spec, series=series, adjustments=tuple(adjustments))


def spec_from_metadata(meta: dict[str, Any], symbol: str, csv: Path | None, cache_dir: Path = DEFAULT_CACHE) -> DataSpec:
    """Replay a bundle's ``data`` section. A CSV-trained bundle needs the file's path (``csv``)."""
    data = meta.get("data") or {}
    source = data.get("source", "")
    if csv is None and source.startswith("csv:"):
        raise ValueError(f"this bundle was trained from {source}: pass --csv PATH to that file")
    period = data.get("period") or {}
    return DataSpec(
        symbol=symbol,
        csv=csv,
        start=_date(period.get("start")),
        end=_date(period.get("end")),
        adjusted=bool(data.get("auto_adjust", True)),
        scale=float(data.get("scale", 1.0)),
        split_adjust=tuple(dt.date.fromisoformat(a["date"]) for a in data.get("adjustments", [])),
        cache_dir=cache_dir,
    )


def _date(text: str | None) -> dt.date | None:
    return None if text is None else dt.date.fromisoformat(text)
