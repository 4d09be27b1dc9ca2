"""Back-adjusting split-like jumps in unadjusted price series.

A bonus-share issue or a split moves the quoted price overnight by a fixed
factor that is not a market move: left in, it teaches a model a crash that
never happened, and every window that straddles it is distorted. Without
corporate-action data we recognise such a jump by its shape: a daily move
much larger than the series' usual one (``min_jump`` times the median absolute
log return) in otherwise ordinary trading (no other move within ``radius``
days reaches ``max_neighbour`` times it). Real crashes come with turbulent
days around them; ex-dividend drops are smaller. Every jump found is
reported, and back-adjusted by its whole observed ratio: prices before it are
multiplied so that the jump day's return becomes zero.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from .series import PriceSeries


@dataclass(frozen=True)
class Adjustment:
    """Closes dated before ``date`` were multiplied by ``factor``."""

    date: dt.date
    factor: float
    reason: str


def detect_jumps(series: PriceSeries, *, min_jump: float = 15.0, max_neighbour: float = 0.25, radius: int = 10) -> list[dt.date]:
    """Dates whose close jumped from the previous one in a split-like way (see module docstring)."""
    moves = np.abs(np.diff(np.log(series.closes)))
    if len(moves) < 2 * radius + 1:
        return []
    typical = float(np.median(moves))
    found = []
    for i in np.flatnonzero(moves > min_jump * typical):
        neighbours = np.concatenate([moves[max(0, i - radius) : i], moves[i + 1 : i + 1 + radius]])
        if neighbours.max(initial=0.0) <= max_neighbour * moves[i]:
            found.append(series.dates[i + 1])
    return found


def back_adjust(series: PriceSeries, dates: Iterable[dt.date], reason: str) -> tuple[PriceSeries, list[Adjustment]]:
    """Remove the jump into each of ``dates`` by rescaling every earlier close."""
    closes = series.closes.copy()
    index = {d: i for i, d in enumerate(series.dates)}
    done = []
    for date in sorted(dates):
        i = index.get(date)
        if i is None or i == 0:
            raise ValueError(f"{series.symbol}: {date} is not a date of the series after its first row")
        factor = float(closes[i] / closes[i - 1])
        closes[:i] *= factor
        done.append(Adjustment(date=date, factor=factor, reason=reason))
    adjusted = PriceSeries(series.symbol, series.dates, closes, series.source, series.dropped, series.column)
    return adjusted, done
