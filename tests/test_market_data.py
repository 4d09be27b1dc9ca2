"""Market data: CSV parsing, cleaning and its reports, length refusals, split back-adjustment."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
from lstm_predictor.daemon.market_data import (
    CsvDirectorySource,
    CsvFileSource,
    EmptyDataError,
    InsufficientDataError,
    RawRow,
    SourceUnavailableError,
    UnknownSymbolError,
    back_adjust,
    clean,
    detect_jumps,
    require_length,
)

D = dt.date


def write(path: Path, text: str) -> Path:
    path.write_text(text.strip() + "\n", encoding="utf-8")
    return path


YAHOO = """
Date,Open,High,Low,Close,Adj Close,Volume
2024-01-03,10,10,10,10.5,9.5,100
2024-01-02,10,10,10,10.0,9.0,100
2024-01-04,10,10,10,11.0,10.0,100
"""


def test_yahoo_csv_reads_adjusted_close_sorted_by_date(tmp_path: Path) -> None:
    series = CsvFileSource(write(tmp_path / "ABC.csv", YAHOO)).fetch("ABC")
    assert series.dates == (D(2024, 1, 2), D(2024, 1, 3), D(2024, 1, 4))
    assert series.closes.tolist() == [9.0, 9.5, 10.0]
    assert series.column == "Adj Close"
    assert series.closes.dtype == np.float64
    assert series.source == f"csv:{tmp_path / 'ABC.csv'}"


def test_adjusted_false_or_explicit_column_reads_that_column(tmp_path: Path) -> None:
    path = write(tmp_path / "ABC.csv", YAHOO)
    assert CsvFileSource(path, adjusted=False).fetch("ABC").closes.tolist() == [10.0, 10.5, 11.0]
    assert CsvFileSource(path, column="Open").fetch("ABC").closes.tolist() == [10.0, 10.0, 10.0]
    with pytest.raises(SourceUnavailableError, match="no 'Price' column"):
        CsvFileSource(path, column="Price").fetch("ABC")


def test_file_without_adj_close_falls_back_to_close(tmp_path: Path) -> None:
    path = write(tmp_path / "VAL.csv", "Date,Open,High,Low,Close,Volume\n2024-01-02,1,1,1,41.5,10\n2024-01-03,1,1,1,42.0,10")
    series = CsvFileSource(path).fetch("VAL")
    assert series.column == "Close"
    assert series.closes.tolist() == [41.5, 42.0]


def test_plain_date_close_file_has_no_volume_check(tmp_path: Path) -> None:
    series = CsvFileSource(write(tmp_path / "X.csv", "Date,Close\n2024-01-02,5\n2024-01-03,6")).fetch("X")
    assert series.closes.tolist() == [5.0, 6.0]
    assert series.dropped == ()


def test_cleaning_drops_and_reports_each_bad_row(tmp_path: Path) -> None:
    path = write(
        tmp_path / "BAD.csv",
        """
Date,Close,Volume
2024-01-02,10,100
2024-01-03,10,0
2024-01-04,0,100
2024-01-05,-1,100
2024-01-08,null,100
2024-01-09,,100
2024-01-10,11,100
2024-01-10,12,100
2024-01-11,13,
""",
    )
    series = CsvFileSource(path).fetch("BAD")
    assert series.dates == (D(2024, 1, 2), D(2024, 1, 10), D(2024, 1, 11))
    assert series.closes.tolist() == [10.0, 12.0, 13.0]  # the last row of a duplicated date wins
    reasons = {(r.date, r.reason.split(" (")[0]) for r in series.dropped}
    assert reasons == {
        (D(2024, 1, 3), "zero volume"),
        (D(2024, 1, 4), "non-positive or infinite close"),
        (D(2024, 1, 5), "non-positive or infinite close"),
        (D(2024, 1, 8), "missing close"),
        (D(2024, 1, 9), "missing close"),
        (D(2024, 1, 10), "duplicate date"),
    }


def test_clean_is_the_same_for_any_row_order() -> None:
    rows = [RawRow(D(2024, 1, 3), 2.0, 1.0), RawRow(D(2024, 1, 2), 1.0, 1.0), RawRow(D(2024, 1, 4), 3.0, None)]
    series = clean("S", rows, "test")
    assert series.dates == (D(2024, 1, 2), D(2024, 1, 3), D(2024, 1, 4))
    assert series.closes.tolist() == [1.0, 2.0, 3.0]


def test_a_file_with_no_usable_rows_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "Z.csv", "Date,Close,Volume\n2024-01-02,10,0\n2024-01-03,0,5")
    with pytest.raises(EmptyDataError, match="no usable price rows .2 rows dropped"):
        CsvFileSource(path).fetch("Z")
    with pytest.raises(EmptyDataError, match="empty"):
        CsvFileSource(write(tmp_path / "E.csv", "")).fetch("E")


def test_a_bad_date_is_refused_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path / "D.csv", "Date,Close\n2024-01-02,10\n02/01/2024,11")
    with pytest.raises(SourceUnavailableError, match=r"D.csv:3: '02/01/2024' is not a date"):
        CsvFileSource(path).fetch("D")


def test_start_end_are_inclusive_and_an_empty_range_is_refused(tmp_path: Path) -> None:
    source = CsvFileSource(write(tmp_path / "ABC.csv", YAHOO))
    assert source.fetch("ABC", D(2024, 1, 3), D(2024, 1, 4)).dates == (D(2024, 1, 3), D(2024, 1, 4))
    with pytest.raises(EmptyDataError, match="no rows between 2025-01-01 and the end .it covers 2024-01-02 .. 2024-01-04"):
        source.fetch("ABC", D(2025, 1, 1))


def test_require_length_says_how_many_rows_it_has_and_needs(tmp_path: Path) -> None:
    series = CsvFileSource(write(tmp_path / "ABC.csv", YAHOO)).fetch("ABC")
    assert require_length(series, 3, "a window") is series
    with pytest.raises(InsufficientDataError, match=r"ABC: a 60-day window needs at least 61 daily closes, but .* has only 3") as err:
        require_length(series, 61, "a 60-day window")
    assert (err.value.rows, err.value.needed) == (3, 61)


def test_directory_source_finds_files_by_symbol_and_refuses_unknown_ones(tmp_path: Path) -> None:
    write(tmp_path / "ABC.csv", YAHOO)
    source = CsvDirectorySource(tmp_path)
    assert len(source.fetch("ABC")) == 3
    with pytest.raises(UnknownSymbolError, match="no price file NOPE.csv"):
        source.fetch("NOPE")
    with pytest.raises(UnknownSymbolError, match="not a valid symbol"):
        source.fetch("../ABC")
    with pytest.raises(SourceUnavailableError, match="does not exist"):
        CsvDirectorySource(tmp_path / "missing").fetch("ABC")


def test_file_source_serves_only_its_symbol(tmp_path: Path) -> None:
    source = CsvFileSource(write(tmp_path / "ABC.csv", YAHOO))
    with pytest.raises(UnknownSymbolError, match="only has ABC"):
        source.fetch("XYZ")
    with pytest.raises(SourceUnavailableError, match="no such price file"):
        CsvFileSource(tmp_path / "gone.csv").fetch("gone")


def _walk(n: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 30.0 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))


def test_a_split_like_jump_is_found_and_back_adjusted() -> None:
    closes = _walk(120)
    closes[60:] *= 2 / 3  # a 50 % bonus-share issue on day 60
    dates = tuple(D(2024, 1, 1) + dt.timedelta(days=i) for i in range(120))
    series = clean("S", [RawRow(d, c) for d, c in zip(dates, closes)], "test")
    assert detect_jumps(series) == [dates[60]]
    adjusted, done = back_adjust(series, [dates[60]], "split-like jump")
    assert done[0].date == dates[60] and done[0].factor == pytest.approx(closes[60] / closes[59])
    assert adjusted.closes[60] == adjusted.closes[59]  # the jump day's return is gone
    np.testing.assert_allclose(adjusted.closes[60:], series.closes[60:])  # later prices are untouched
    np.testing.assert_allclose(np.diff(np.log(adjusted.closes[:60])), np.diff(np.log(series.closes[:60])))


def test_a_crash_in_turbulent_days_is_not_taken_for_a_split() -> None:
    rng = np.random.default_rng(3)
    moves = rng.normal(0, 0.01, 119)
    moves[55:66] = rng.choice([-1, 1], 11) * 0.12  # a turbulent fortnight
    moves[59] = -0.35  # and a crash inside it
    closes = 30.0 * np.exp(np.concatenate([[0.0], np.cumsum(moves)]))
    series = clean("S", [RawRow(D(2024, 1, 1) + dt.timedelta(days=i), c) for i, c in enumerate(closes)], "test")
    assert detect_jumps(series) == []


def test_real_itub4_bonus_share_jumps_are_found(shared_dir: Path) -> None:
    source = CsvDirectorySource(shared_dir / "data")
    assert detect_jumps(source.fetch("ITUB4.SA")) == [D(2018, 11, 21), D(2021, 10, 4)]
    # Real crashes (COVID 2020, the 2019 Brumadinho dam failure) are market moves, not splits.
    assert detect_jumps(source.fetch("VALE3.SA")) == []
    assert detect_jumps(source.fetch("PETR4.SA")) == []


def test_real_petr4_file_matches_the_documented_calendar(shared_dir: Path) -> None:
    series = CsvDirectorySource(shared_dir / "data").fetch("PETR4.SA")
    assert len(series) == 1625  # 1,626 rows less the zero-volume exchange holiday
    assert [(r.date, r.reason.split(" (")[0]) for r in series.dropped] == [(D(2018, 1, 25), "zero volume")]
    assert series.between(D(2018, 5, 11)).dates[0] == D(2018, 5, 11)
    assert len(series.between(D(2018, 5, 11))) == 1537
