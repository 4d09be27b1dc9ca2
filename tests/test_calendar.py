"""B3 trading days: weekends and the exchange's holidays are skipped, never guessed."""

from __future__ import annotations

import datetime as dt

import pytest
from lstm_predictor.daemon.trading_calendar import (
    b3_today,
    is_trading_day,
    next_trading_day,
    previous_trading_day,
    trading_days_after,
)

D = dt.date


@pytest.mark.parametrize(
    ("day", "expected", "why"),
    [
        (D(2024, 7, 19), D(2024, 7, 22), "Friday -> Monday"),
        (D(2024, 2, 9), D(2024, 2, 14), "Carnival Monday and Tuesday are closed"),
        (D(2024, 3, 28), D(2024, 4, 1), "Good Friday is closed"),
        (D(2024, 5, 29), D(2024, 5, 31), "Corpus Christi is closed"),
        (D(2024, 11, 19), D(2024, 11, 21), "Black Awareness Day (national since 2024) is closed"),
        (D(2024, 12, 23), D(2024, 12, 26), "Christmas Eve and Christmas are closed"),
        (D(2024, 12, 30), D(2025, 1, 2), "the last business day of the year and New Year's Day are closed"),
        (D(2025, 2, 28), D(2025, 3, 5), "Carnival 2025 (3-4 March)"),
    ],
)
def test_next_trading_day_skips_weekends_and_b3_holidays(day: dt.date, expected: dt.date, why: str) -> None:
    assert next_trading_day(day) == expected, why


def test_trading_days_after_lists_sessions_in_order() -> None:
    assert trading_days_after(D(2024, 12, 20), 6) == [
        D(2024, 12, 23), D(2024, 12, 26), D(2024, 12, 27), D(2024, 12, 30), D(2025, 1, 2), D(2025, 1, 3),
    ]
    assert trading_days_after(D(2024, 12, 20), 0) == []


def test_previous_trading_day_mirrors_next() -> None:
    assert previous_trading_day(D(2024, 2, 14)) == D(2024, 2, 9)
    assert previous_trading_day(D(2025, 1, 2)) == D(2024, 12, 30)


def test_is_trading_day() -> None:
    assert is_trading_day(D(2024, 7, 19))
    assert not is_trading_day(D(2024, 7, 20))  # Saturday
    assert not is_trading_day(D(2024, 2, 13))  # Carnival
    assert is_trading_day(D(2024, 2, 14))  # Ash Wednesday: B3 opens (late)


def test_today_is_taken_in_sao_paulo() -> None:
    utc_now = dt.datetime.now(dt.timezone.utc)
    assert b3_today() in ((utc_now - dt.timedelta(hours=3)).date(), (utc_now - dt.timedelta(hours=3, seconds=5)).date())


def test_the_generated_b3_table_equals_the_holidays_package_for_every_year_it_covers() -> None:
    # A `holidays` release that changes B3's calendar fails here until the table is regenerated:
    # python -m lstm_predictor.daemon.trading_calendar --regenerate
    holidays = pytest.importorskip("holidays")
    from lstm_predictor.daemon import b3_holidays

    package = holidays.financial_holidays("BVMF", years=range(b3_holidays.FIRST_YEAR, b3_holidays.LAST_YEAR + 1))
    for year in range(b3_holidays.FIRST_YEAR, b3_holidays.LAST_YEAR + 1):
        table_days = sorted(day for day in b3_holidays.HOLIDAYS if day.year == year)
        assert table_days == sorted(day for day in package if day.year == year), year
    assert b3_holidays.FIRST_YEAR <= 2000 and b3_holidays.LAST_YEAR >= 2045


def test_dates_beyond_the_table_fall_back_to_the_holidays_package() -> None:
    from lstm_predictor.daemon import b3_holidays

    year = b3_holidays.LAST_YEAR + 1
    christmas = D(year, 12, 25)
    while christmas.weekday() >= 5:  # a weekday Christmas, so only the holiday rule can close it
        year += 1
        christmas = D(year, 12, 25)
    assert not is_trading_day(christmas)
    assert is_trading_day(next_trading_day(christmas - dt.timedelta(days=3)))


def test_the_daemon_does_not_import_the_holidays_package_for_dates_in_the_table() -> None:
    import subprocess
    import sys

    code = (
        "import sys, datetime as dt\n"
        "from lstm_predictor.daemon.trading_calendar import trading_days_after\n"
        "trading_days_after(dt.date(2026, 12, 20), 30)\n"
        "print('holidays' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
