"""B3 trading days: the dates a prediction is *for*.

A forecast step is one trading session, so its date is the next day B3 is
open, not the next weekday: Carnival Monday and Tuesday, Good Friday, Corpus
Christi, Christmas Eve and the last business day of the year are closed. The
calendar is the ``holidays`` package's B3 financial calendar (``BVMF``).

Checked against the exchange's own COTAHIST records for 2018-2024: every day
the calendar calls a holiday was closed, and the only closed weekdays it misses
are the São Paulo city/state holidays (25 Jan, 9 Jul, 20 Nov) on which B3 still
closed until 2021. The daemon only dates days *after* its latest data, so those
past gaps never reach a response.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

import holidays

# B3 keeps São Paulo time, which has had no daylight saving since 2019.
SAO_PAULO = dt.timezone(dt.timedelta(hours=-3), "America/Sao_Paulo")


@lru_cache(maxsize=1)
def _b3_holidays() -> holidays.HolidayBase:
    # One instance; it adds years lazily as dates are looked up.
    return holidays.financial_holidays("BVMF")


def b3_today() -> dt.date:
    """Today's date in São Paulo (the server's own time zone does not matter)."""
    return dt.datetime.now(SAO_PAULO).date()


def is_trading_day(day: dt.date) -> bool:
    """True when B3 holds a regular session on ``day``."""
    return day.weekday() < 5 and day not in _b3_holidays()


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
