"""B3 trading days: the dates a prediction is *for*.

A forecast step is one trading session, so its date is the next day B3 is
open, not the next weekday: Carnival Monday and Tuesday, Good Friday, Corpus
Christi, Christmas Eve and the last business day of the year are closed. The
calendar is the ``holidays`` package's B3 financial calendar (``BVMF``), frozen
into the generated table ``b3_holidays.py`` for the years it covers: importing
``holidays`` costs about 17 MB of resident memory and 100-200 ms, because its
financial calendars pull in every country module. Dates outside the table fall
back to the package, imported only then. ``tests/test_calendar.py`` checks the
table against the installed package year by year; regenerate it with::

    python -m lstm_predictor.daemon.trading_calendar --regenerate

Checked against the exchange's own COTAHIST records for 2018-2024: every day
the calendar calls a holiday was closed, and the only closed weekdays it misses
are the São Paulo city/state holidays (25 Jan, 9 Jul, 20 Nov) on which B3 still
closed until 2021. The daemon only dates days *after* its latest data, so those
past gaps never reach a response.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Container
from functools import lru_cache
from pathlib import Path

from . import b3_holidays

TABLE_YEARS = range(2000, 2046)

# B3 keeps São Paulo time, which has had no daylight saving since 2019.
# The latest day after which predictions can still be dated: up to 30 trading days
# (a forecast's longest) after it; from the year 9999 that would overflow dt.date.
LAST_DATABLE_DAY = dt.date(dt.MAXYEAR - 1, 12, 31)
SAO_PAULO = dt.timezone(dt.timedelta(hours=-3), "America/Sao_Paulo")


@lru_cache(maxsize=1)
def package_holidays() -> Container[dt.date]:
    """The ``holidays`` package's B3 calendar (one instance; it adds years lazily as dates are looked up)."""
    import holidays  # about 17 MB: only for dates outside the table, or to regenerate it

    return holidays.financial_holidays("BVMF")


def _is_holiday(day: dt.date) -> bool:
    if b3_holidays.FIRST_YEAR <= day.year <= b3_holidays.LAST_YEAR:
        return day in b3_holidays.HOLIDAYS
    return day in package_holidays()


def b3_today() -> dt.date:
    """Today's date in São Paulo (the server's own time zone does not matter)."""
    return dt.datetime.now(SAO_PAULO).date()


def is_trading_day(day: dt.date) -> bool:
    """True when B3 holds a regular session on ``day``."""
    return day.weekday() < 5 and not _is_holiday(day)


def next_trading_day(day: dt.date) -> dt.date:
    """The first trading day strictly after ``day``."""
    day += dt.timedelta(days=1)
    while not is_trading_day(day):
        day += dt.timedelta(days=1)
    return day


def trading_days_after(day: dt.date, count: int) -> list[dt.date]:
    """The ``count`` trading days following ``day``, in order."""
    days: list[dt.date] = []
    for _ in range(count):
        day = next_trading_day(day)
        days.append(day)
    return days


def previous_trading_day(day: dt.date) -> dt.date:
    """The last trading day strictly before ``day``."""
    day -= dt.timedelta(days=1)
    while not is_trading_day(day):
        day -= dt.timedelta(days=1)
    return day


def render_table(years: range = TABLE_YEARS) -> str:
    """The source of ``b3_holidays.py``: the package's B3 holidays for ``years``, one line per year."""
    import holidays

    calendar = holidays.financial_holidays("BVMF", years=years)
    lines = [
        '"""B3 (BVMF) exchange holidays, generated from the ``holidays`` package: do not edit.',
        "",
        "Regenerate with ``python -m lstm_predictor.daemon.trading_calendar --regenerate``",
        f"(generated from holidays {holidays.__version__}).",
        '"""',
        "",
        "import datetime as _dt",
        "",
        f"FIRST_YEAR = {years[0]}",
        f"LAST_YEAR = {years[-1]}",
        "",
        "HOLIDAYS: frozenset[_dt.date] = frozenset(",
        "    _dt.date.fromisoformat(day)",
        "    for day in (",
    ]
    for year in years:
        days = sorted(day for day in calendar if day.year == year)
        lines.append("        " + " ".join(f'"{day.isoformat()}",' for day in days))
    lines += ["    )", ")", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:] != ["--regenerate"]:
        sys.exit("usage: python -m lstm_predictor.daemon.trading_calendar --regenerate")
    Path(b3_holidays.__file__).write_text(render_table())
