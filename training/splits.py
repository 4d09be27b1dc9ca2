"""Chronological train / validation / test splits, and the windows of each part.

A part is a range of *target* rows. Its windows are made by the one window
function (:func:`lstm_predictor.daemon.windows.training_windows`), so the first
windows of the validation and test parts reach ``look_back`` rows back into
the part before them (known history) while no target is ever shared. There is
no global scaler: each window is normalised by one of its own prices.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from lstm_predictor.daemon.market_data import InsufficientDataError, PriceSeries
from lstm_predictor.daemon.windows import Rule, TrainingWindows, training_windows


@dataclass(frozen=True)
class Part:
    """Targets are the rows ``start .. stop - 1`` of the series."""

    name: str
    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class Splits:
    look_back: int
    train: Part
    validation: Part
    test: Part

    def __iter__(self) -> Iterator[Part]:
        return iter((self.train, self.validation, self.test))

    def windows(self, closes: np.ndarray, part: Part, rule: Rule) -> TrainingWindows:
        return training_windows(closes, self.look_back, rule, part.start, part.stop)

    def describe(self, dates: Sequence[dt.date]) -> dict[str, Any]:
        """The split as recorded in a bundle's metadata: target dates, count, and where inputs begin."""
        return {
            part.name: {
                "start": dates[part.start].isoformat(),
                "end": dates[part.stop - 1].isoformat(),
                "targets": len(part),
                "inputs_from": dates[part.start - self.look_back].isoformat(),
            }
            for part in self
        }


def _checked(series: PriceSeries, look_back: int, cuts: tuple[int, int], how: str) -> Splits:
    n = len(series)
    train = Part("train", look_back, cuts[0])
    validation = Part("validation", cuts[0], cuts[1])
    test = Part("test", cuts[1], n)
    for part in (train, validation, test):
        if len(part) < 1:
            raise InsufficientDataError(
                f"{series.symbol}: the {part.name} part is empty when {how} {n} rows with a look-back of "
                f"{look_back} ({series.start} .. {series.end}); more rows are needed",
                rows=n,
                needed=n + 1,
            )
    return Splits(look_back, train, validation, test)


def _cuts(n: int, fractions: Sequence[float]) -> tuple[int, int]:
    return int(n * fractions[0]), int(n * (fractions[0] + fractions[1]))


def _fits(n: int, look_back: int, fractions: Sequence[float]) -> bool:
    a, b = _cuts(n, fractions)
    return look_back < a < b < n


def split_by_fraction(series: PriceSeries, look_back: int, fractions: Sequence[float] = (0.7, 0.15, 0.15)) -> Splits:
    """Cut at ``int(n * cumulative fraction)`` rows: for the original PETR4 split (1,537 rows,
    70/15/15) that is rows 1,075 and 1,306, i.e. validation from 2022-09-13 and test from 2023-08-16.

    The first ``look_back`` rows of the train part are inputs only, so it has
    ``look_back`` fewer targets than rows.
    """
    if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1.0) > 1e-9:
        raise ValueError(f"fractions must be three positive numbers summing to 1, got {list(fractions)}")
    n = len(series)
    if not _fits(n, look_back, fractions):
        # The search stops at a bound (a tiny fraction may need more rows than any series has): none
        # below it fits, so the bound is then a true "at least".
        limit = 100 * (look_back + 3)
        needed = next((m for m in range(look_back + 3, limit) if _fits(m, look_back, fractions)), limit)
        shares = "/".join(f"{f * 100:g}" for f in fractions)
        raise InsufficientDataError(
            f"{series.symbol}: a {shares} % split with a look-back of {look_back} needs at least {needed} daily closes, "
            f"but {series.source} has only {n} ({series.start} .. {series.end})",
            rows=n,
            needed=needed,
        )
    return _checked(series, look_back, _cuts(n, fractions), "splitting")


def split_by_dates(series: PriceSeries, look_back: int, validation_start: dt.date, test_start: dt.date) -> Splits:
    """Validation targets from the first row dated on/after ``validation_start``, test likewise."""
    if not validation_start < test_start:
        raise ValueError(f"validation start {validation_start} must come before test start {test_start}")
    dates = np.array(series.dates, dtype="datetime64[D]")
    cuts = (
        int(np.searchsorted(dates, np.datetime64(validation_start, "D"))),
        int(np.searchsorted(dates, np.datetime64(test_start, "D"))),
    )
    return _checked(series, look_back, cuts, f"splitting at {validation_start} and {test_start}")
