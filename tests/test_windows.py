"""Windows and splits: target alignment, look-back reach into the previous part, no shared targets."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
from lstm_predictor.daemon.market_data import (
    CsvDirectorySource,
    InsufficientDataError,
    PriceSeries,
    RawRow,
    clean,
)
from lstm_predictor.daemon.windows import training_windows
from lstm_predictor.training.splits import split_by_dates, split_by_fraction


def series_of(closes: list[float] | np.ndarray) -> PriceSeries:
    day0 = dt.date(2024, 1, 1)
    return clean("T", [RawRow(day0 + dt.timedelta(days=i), float(c)) for i, c in enumerate(closes)], "test")


def test_each_window_is_the_look_back_closes_just_before_its_target() -> None:
    closes = np.arange(1.0, 11.0)  # 1, 2, ..., 10
    first = training_windows(closes, 3, "window_first", 3, 10)
    assert first.targets.tolist() == list(range(3, 10))
    np.testing.assert_allclose(first.x[0, :, 0], [1, 2, 3])  # / first close 1
    assert first.y[0] == pytest.approx(4.0) and first.refs[0] == 1.0
    np.testing.assert_allclose(first.x[-1, :, 0], np.array([7, 8, 9]) / 7)
    assert first.y[-1] == pytest.approx(10 / 7)

    last = training_windows(closes, 3, "window_last", 3, 10)
    np.testing.assert_allclose(last.x[0, :, 0], np.array([1, 2, 3]) / 3)
    assert last.y[0] == pytest.approx(4 / 3) and last.refs[0] == 3.0
    # denormalising a target gives back the close it came from
    np.testing.assert_allclose(last.y * last.refs, closes[last.targets], rtol=1e-6)


def test_fraction_split_cuts_at_cumulative_row_counts() -> None:
    splits = split_by_fraction(series_of(np.arange(1.0, 21.0)), 3, (0.5, 0.25, 0.25))
    assert [(p.name, p.start, p.stop) for p in splits] == [("train", 3, 10), ("validation", 10, 15), ("test", 15, 20)]


def test_no_window_crosses_a_boundary_except_the_look_back() -> None:
    look_back = 5
    series = series_of(100 * np.exp(np.cumsum(np.random.default_rng(0).normal(0, 0.01, 80))))
    splits = split_by_fraction(series, look_back)
    seen: list[int] = []
    for part in splits:
        w = splits.windows(series.closes, part, "window_first")
        assert w.targets.min() == part.start and w.targets.max() == part.stop - 1  # targets stay inside the part
        # inputs of target t are rows t-look_back .. t-1: they reach back at most look_back rows before the part
        assert (w.targets - look_back).min() == part.start - look_back
        np.testing.assert_allclose(w.x[:, :, 0] * w.refs[:, None], np.stack([series.closes[t - look_back : t] for t in w.targets]), rtol=1e-6)
        seen += w.targets.tolist()
    assert seen == list(range(look_back, len(series)))  # every row after the first look_back is a target exactly once


def test_windows_are_normalised_by_their_own_prices_only() -> None:
    closes = 50 * np.exp(np.cumsum(np.random.default_rng(1).normal(0, 0.02, 40)))
    scaled_later = closes.copy()
    scaled_later[25:] *= 3.0  # a change far in the future of early windows
    a = training_windows(closes, 10, "window_first", 10, 20)
    b = training_windows(scaled_later, 10, "window_first", 10, 20)
    np.testing.assert_array_equal(a.x, b.x)  # no global scaler: later data leaves early windows alone
    c = training_windows(closes * 0.969385, 10, "window_last", 10, 40)
    np.testing.assert_allclose(c.x, training_windows(closes, 10, "window_last", 10, 40).x, rtol=1e-6)


def test_date_split_matches_the_fraction_split_on_the_same_dates() -> None:
    series = series_of(np.arange(1.0, 41.0))
    by_fraction = split_by_fraction(series, 4)
    by_dates = split_by_dates(series, 4, series.dates[by_fraction.validation.start], series.dates[by_fraction.test.start])
    assert by_dates == by_fraction
    assert by_dates.describe(series.dates)["validation"] == {
        "start": "2024-01-29",
        "end": "2024-02-03",
        "targets": 6,
        "inputs_from": "2024-01-25",
    }


def test_a_series_too_short_to_split_is_refused_with_counts() -> None:
    with pytest.raises(InsufficientDataError, match=r"70/15/15 % split with a look-back of 60 needs at least 88 daily closes, but test has only 70"):
        split_by_fraction(series_of(np.arange(1.0, 71.0)), 60)
    with pytest.raises(InsufficientDataError, match=r"needs at least 6300 daily closes, but test has only 70"):
        split_by_fraction(series_of(np.arange(1.0, 71.0)), 60, (0.99998, 0.00001, 0.00001))
    with pytest.raises(InsufficientDataError, match="the test part is empty"):
        split_by_dates(series_of(np.arange(1.0, 71.0)), 5, dt.date(2024, 1, 20), dt.date(2025, 1, 1))
    with pytest.raises(ValueError, match="must come before"):
        split_by_dates(series_of(np.arange(1.0, 71.0)), 5, dt.date(2024, 2, 1), dt.date(2024, 1, 20))


def test_the_original_petr4_split_is_reproduced(shared_dir: Path) -> None:
    series = CsvDirectorySource(shared_dir / "data").fetch("PETR4.SA", dt.date(2018, 5, 11))
    described = split_by_fraction(series, 60).describe(series.dates)
    assert described["train"]["end"] == "2022-09-12"
    assert (described["validation"]["start"], described["validation"]["end"]) == ("2022-09-13", "2023-08-15")
    assert (described["test"]["start"], described["test"]["end"], described["test"]["targets"]) == ("2023-08-16", "2024-07-19", 231)
