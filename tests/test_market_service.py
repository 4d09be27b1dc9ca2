"""The daemon's market-data layer: TTL cache, single flight, timeout, backoff, stale fallback.

Unit tests drive MarketDataService with a fake PriceSource (the network boundary)
and a controllable clock; the end-to-end test runs the real daemon on a CSV directory.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from daemon_harness import write_prices
from lstm_predictor.daemon.errors import NotFound, Unavailable
from lstm_predictor.daemon.market_data import (
    PriceSeries,
    RateLimitedError,
    SourceUnavailableError,
    UnknownSymbolError,
)
from lstm_predictor.daemon.market_data.service import MarketDataService
from lstm_predictor.daemon.metrics import Metrics
from lstm_predictor.daemon.trading_calendar import b3_today, previous_trading_day
from tiny_bundle import make_tiny_bundle

TTL = 300.0


def series(symbol: str = "PETR4.SA", last: float = 30.0) -> PriceSeries:
    dates = tuple(dt.date(2024, 7, 1) + dt.timedelta(days=i) for i in range(3))
    return PriceSeries(symbol=symbol, dates=dates, closes=np.array([28.0, 29.0, last]), source="fake")


class FakeSource:
    """A price source whose next answer the test decides; counts its calls."""

    name = "fake"

    def __init__(self) -> None:
        self.calls = 0
        self.answer: Callable[[str], PriceSeries] = series

    def fetch(self, symbol: str, start: dt.date | None = None, end: dt.date | None = None) -> PriceSeries:
        self.calls += 1
        return self.answer(symbol)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def raising(exc: Exception) -> Callable[[str], PriceSeries]:
    def answer(symbol: str) -> PriceSeries:
        raise exc

    return answer


def make(source: FakeSource, clock: Clock, timeout: float = 10.0) -> MarketDataService:
    return MarketDataService(source, ttl=TTL, timeout=timeout, metrics=Metrics(), clock=clock)


def run(coro):
    return asyncio.run(coro)


def test_closes_are_reused_for_the_ttl_then_fetched_again() -> None:
    source, clock = FakeSource(), Clock()

    async def scenario() -> None:
        service = make(source, clock)
        first = await service.get("PETR4.SA")
        clock.now += TTL - 1
        assert await service.get("PETR4.SA") is first
        assert source.calls == 1
        clock.now += 2
        source.answer = lambda s: series(s, last=31.0)
        fresh = await service.get("PETR4.SA")
        assert source.calls == 2 and fresh.series.closes[-1] == 31.0 and not fresh.stale

    run(scenario())


def test_concurrent_requests_for_a_symbol_share_one_fetch() -> None:
    source, clock = FakeSource(), Clock()
    release = threading.Event()

    def slow(symbol: str) -> PriceSeries:
        release.wait(10)
        return series(symbol)

    source.answer = slow

    async def scenario() -> None:
        service = make(source, clock)
        waiters = [asyncio.ensure_future(service.get("PETR4.SA")) for _ in range(20)]
        await asyncio.sleep(0.05)
        release.set()
        snapshots = await asyncio.gather(*waiters)
        assert source.calls == 1
        assert all(s is snapshots[0] for s in snapshots)
        await service.get("VALE3.SA")  # another symbol is its own fetch
        assert source.calls == 2

    run(scenario())


def test_a_failure_with_nothing_cached_is_503_with_retry_after() -> None:
    source, clock = FakeSource(), Clock()
    source.answer = raising(SourceUnavailableError("connection reset"))

    async def scenario() -> None:
        with pytest.raises(Unavailable) as caught:
            await make(source, clock).get("PETR4.SA")
        error = caught.value
        assert error.status == 503 and int(error.headers["Retry-After"]) >= 1
        assert "connection reset" in error.message and "PETR4.SA" in error.message

    run(scenario())


def test_a_failure_serves_the_last_good_closes_marked_stale() -> None:
    source, clock = FakeSource(), Clock()

    async def scenario() -> None:
        service = make(source, clock)
        good = await service.get("PETR4.SA")
        clock.now += TTL + 1
        source.answer = raising(SourceUnavailableError("connection reset"))
        served = await service.get("PETR4.SA")
        assert served.stale and served.series is good.series
        assert "connection reset" in served.stale_reason

    run(scenario())


def test_after_a_failure_the_source_is_left_alone_until_the_backoff_ends() -> None:
    source, clock = FakeSource(), Clock()
    source.answer = raising(SourceUnavailableError("down"))

    async def scenario() -> None:
        service = make(source, clock)
        for _ in range(3):
            with pytest.raises(Unavailable):
                await service.get("PETR4.SA")
        assert source.calls == 1  # the two retries fell inside the backoff
        clock.now += 1.5
        source.answer = series
        assert not (await service.get("PETR4.SA")).stale
        assert source.calls == 2

    run(scenario())


def test_a_failure_for_one_symbol_does_not_hold_back_the_others() -> None:
    source, clock = FakeSource(), Clock()

    def only_vale_is_broken(symbol: str) -> PriceSeries:
        if symbol == "VALE3.SA":
            raise SourceUnavailableError("VALE3.SA.csv: no 'Close' column")
        return series(symbol)

    source.answer = only_vale_is_broken

    async def scenario() -> None:
        service = make(source, clock)
        with pytest.raises(Unavailable):
            await service.get("VALE3.SA")
        assert not (await service.get("PETR4.SA")).stale
        assert source.calls == 2

    run(scenario())


def test_consecutive_failures_back_off_longer() -> None:
    source, clock = FakeSource(), Clock()
    source.answer = raising(SourceUnavailableError("down"))

    async def scenario() -> list[int]:
        service = make(source, clock)
        waits = []
        for _ in range(4):
            with pytest.raises(Unavailable) as caught:
                await service.get("PETR4.SA")
            waits.append(int(caught.value.headers["Retry-After"]))
            clock.now += waits[-1] + 0.1
        return waits

    waits = run(scenario())
    assert waits == sorted(waits) and waits[-1] > waits[0]
    assert source.calls == 4  # each retry came after the backoff, so each asked the source


def test_a_rate_limit_backs_off_for_as_long_as_the_source_asks() -> None:
    source, clock = FakeSource(), Clock()
    source.answer = raising(RateLimitedError("Too Many Requests", retry_after=120.0))

    async def scenario() -> None:
        service = make(source, clock)
        with pytest.raises(Unavailable) as caught:
            await service.get("PETR4.SA")
        assert caught.value.headers["Retry-After"] == "120"
        assert "rate limiting" in caught.value.message
        clock.now += 119
        with pytest.raises(Unavailable):
            await service.get("VALE3.SA")  # the whole source is backing off
        assert source.calls == 1
        clock.now += 2
        source.answer = series
        await service.get("PETR4.SA")
        assert source.calls == 2

    run(scenario())


def test_a_rate_limit_without_a_hint_backs_off_at_least_30_seconds() -> None:
    source, clock = FakeSource(), Clock()
    source.answer = raising(RateLimitedError("Too Many Requests"))

    async def scenario() -> None:
        with pytest.raises(Unavailable) as caught:
            await make(source, clock).get("PETR4.SA")
        assert int(caught.value.headers["Retry-After"]) >= 30

    run(scenario())


def test_a_fetch_that_outlasts_the_timeout_counts_as_failed() -> None:
    source, clock = FakeSource(), Clock()
    release = threading.Event()

    def hangs(symbol: str) -> PriceSeries:
        release.wait(10)
        return series(symbol)

    source.answer = hangs

    async def scenario() -> None:
        service = make(source, clock, timeout=0.05)
        try:
            with pytest.raises(Unavailable, match="did not answer within 0.05 s"):
                await service.get("PETR4.SA")
        finally:
            release.set()

    run(scenario())


def test_an_unknown_symbol_is_404_and_not_a_source_failure() -> None:
    source, clock = FakeSource(), Clock()
    source.answer = raising(UnknownSymbolError("XXXX3.SA: no price file"))

    async def scenario() -> None:
        service = make(source, clock)
        with pytest.raises(NotFound, match="no price file"):
            await service.get("XXXX3.SA")
        source.answer = series
        await service.get("PETR4.SA")  # no backoff was started
        assert source.calls == 2

    run(scenario())


def test_an_unexpected_source_exception_is_a_503_not_a_crash() -> None:
    source, clock = FakeSource(), Clock()
    source.answer = raising(KeyError("Close"))

    async def scenario() -> None:
        with pytest.raises(Unavailable, match="KeyError"):
            await make(source, clock).get("PETR4.SA")

    run(scenario())


def test_cache_hits_misses_and_failed_fetches_are_counted() -> None:
    source, clock = FakeSource(), Clock()

    async def scenario() -> MarketDataService:
        service = make(source, clock)
        await service.get("PETR4.SA")
        await service.get("PETR4.SA")
        clock.now += TTL + 1
        source.answer = raising(SourceUnavailableError("down"))
        await service.get("PETR4.SA")
        return service

    text = run(scenario())._metrics.render()[0].decode()
    assert "lstm_predictor_market_data_cache_hits_total 1.0" in text
    assert "lstm_predictor_market_data_cache_misses_total 2.0" in text
    assert 'lstm_predictor_market_data_fetch_failures_total{source="fake"} 1.0' in text


# -- end to end: the real daemon on a CSV directory ----------------------------------------------------


def test_live_falls_back_to_the_last_good_closes_when_the_csv_breaks(start_daemon, tmp_path: Path) -> None:
    make_tiny_bundle(tmp_path / "models" / "TINY3.SA")
    make_tiny_bundle(tmp_path / "models" / "OTHER3.SA", symbol="OTHER3.SA")
    latest = previous_trading_day(b3_today())
    csv = write_prices(tmp_path / "prices", last=latest)
    write_prices(tmp_path / "prices", symbol="OTHER3.SA", last=latest)
    daemon = start_daemon(tmp_path / "models", tmp_path / "prices", args=["--market-data-ttl", "0.2"])

    fresh = daemon.post("/predict/live", {"symbol": "TINY3.SA"}).json()
    assert fresh["data"]["stale"] is False and fresh["data"]["stale_reason"] is None
    assert fresh["last_data_date"] == latest.isoformat()

    csv.write_text("Date,Volume\n", encoding="utf-8")  # the source now fails for every symbol
    (tmp_path / "prices" / "OTHER3.SA.csv").write_text("Date,Volume\n", encoding="utf-8")
    time.sleep(0.3)  # past the TTL
    stale = daemon.post("/predict/live", {"symbol": "TINY3.SA"})
    assert stale.status == 200
    body = stale.json()
    assert body["data"]["stale"] is True and "last good data" in body["data"]["stale_reason"]
    assert body["predicted_price"] == fresh["predicted_price"]

    never_fetched = daemon.post("/predict/live", {"symbol": "OTHER3.SA"})
    assert never_fetched.status == 503 and int(never_fetched.headers["Retry-After"]) >= 1
