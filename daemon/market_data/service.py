"""The daemon's asynchronous face of a blocking price source.

Sources (a CSV directory, yfinance) block: a yfinance download can take
seconds or hang. Requests must not wait on that more than needed, and the
source must not be hammered, so between the handlers and the source sit:

* a worker thread per fetch with a timeout, so the event loop never blocks
  (a daemon thread: one hung for good must not keep the process from exiting);
* a per-symbol cache with a TTL: closes change once a trading day;
* single flight: concurrent requests for one symbol share one fetch;
* backoff after a failure, during which the source is not asked again for
  that symbol; after a rate limit, not asked at all (a rate limit is the
  whole source's, a failure may be one symbol's, e.g. one broken CSV file);
* the last good closes, marked stale, when the source fails; only without
  them does a request fail, with a 503 and ``Retry-After``.

An unknown symbol is not a source failure and is not cached.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import NotFound, Unavailable
from ..metrics import Metrics
from .errors import MarketDataError, RateLimitedError, UnknownSymbolError
from .series import PriceSeries
from .source import PriceSource
from .workers import DaemonThreads

log = logging.getLogger(__name__)

# Backoff after consecutive failures doubles from the first value up to the cap.
FAILURE_BACKOFF = (1.0, 60.0)
# Yahoo's rate limits last minutes; retrying sooner only extends them.
RATE_LIMIT_BACKOFF = (30.0, 600.0)


@dataclass
class _Backoff:
    """When the source may be asked again, and why not before."""

    until: float = 0.0
    delay: float = 0.0  # the last delay applied, doubled on the next failure
    reason: str = ""

    def fail(self, now: float, reason: str, schedule: tuple[float, float], at_least: float | None) -> float:
        first, cap = schedule
        self.delay = min(cap, max(first, 2 * self.delay))
        wait = max(at_least or 0.0, self.delay)
        self.until, self.reason = now + wait, reason
        return wait


@dataclass(frozen=True)
class MarketSnapshot:
    """Closes as served to a request: ``stale`` with the reason when they are the last
    good copy kept because a refresh failed."""

    series: PriceSeries
    fetched_at: float  # the clock's time of the successful fetch
    stale: bool = False
    stale_reason: str | None = None


class MarketDataService:
    def __init__(
        self,
        source: PriceSource,
        *,
        ttl: float,
        timeout: float,
        metrics: Metrics,
        max_threads: int = 4,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.ttl = ttl
        self.timeout = timeout
        self._metrics = metrics
        self._clock = clock
        self._workers = DaemonThreads(max_threads, name="market-data")
        self._cache: dict[str, MarketSnapshot] = {}
        self._inflight: dict[str, asyncio.Task[MarketSnapshot]] = {}
        self._rate_limit = _Backoff()  # the whole source's
        self._failures: dict[str, _Backoff] = {}  # per symbol

    async def get(self, symbol: str) -> MarketSnapshot:
        """The closes of ``symbol``: cached, fetched, or the last good copy marked stale.

        Raises NotFound for a symbol the source does not have, Unavailable (503
        with Retry-After) when the source fails and nothing was fetched before.
        """
        cached = self._cache.get(symbol)
        now = self._clock()
        if cached is not None and now - cached.fetched_at < self.ttl:
            self._metrics.market_cache(True)
            self._metrics.market_data_age(symbol, now - cached.fetched_at)
            return cached
        self._metrics.market_cache(False)
        for backoff in (self._rate_limit, self._failures.get(symbol)):
            if backoff is not None and now < backoff.until:
                return self._fallback(symbol, backoff.reason, backoff.until - now)
        task = self._inflight.get(symbol)
        if task is None:
            task = asyncio.ensure_future(self._refresh(symbol))
            self._inflight[symbol] = task
            task.add_done_callback(lambda _: self._inflight.pop(symbol, None))
        # shield: a client that disconnects must not cancel the fetch others wait for.
        return await asyncio.shield(task)

    async def _refresh(self, symbol: str) -> MarketSnapshot:
        started = self._clock()
        try:
            series = await asyncio.wait_for(self._workers.run(self.source.fetch, symbol), self.timeout)
        except UnknownSymbolError as exc:
            self._metrics.market_fetch(self.source.name, self._clock() - started, True)
            raise NotFound(str(exc), code="unknown_market_symbol", details={"symbol": symbol}) from None
        except RateLimitedError as exc:
            reason = f"{self.source.name} is rate limiting requests ({exc})"
            return self._failed(symbol, started, reason, self._rate_limit, RATE_LIMIT_BACKOFF, exc.retry_after)
        except asyncio.TimeoutError:
            reason = f"{self.source.name} did not answer within {self.timeout:g} s"
            return self._failed(symbol, started, reason, self._symbol_backoff(symbol), FAILURE_BACKOFF)
        except MarketDataError as exc:
            reason = f"{self.source.name} failed: {exc}"
            return self._failed(symbol, started, reason, self._symbol_backoff(symbol), FAILURE_BACKOFF)
        except Exception as exc:  # a library error the source did not translate (yfinance has many)
            log.exception("market-data source %s raised an unexpected error for %s", self.source.name, symbol)
            reason = f"{self.source.name} failed: {exc!r}"
            return self._failed(symbol, started, reason, self._symbol_backoff(symbol), FAILURE_BACKOFF)
        now = self._clock()
        self._metrics.market_fetch(self.source.name, now - started, True)
        self._metrics.market_data_age(symbol, 0.0)
        self._rate_limit.delay = 0.0
        self._failures.pop(symbol, None)
        snapshot = MarketSnapshot(series=series, fetched_at=now)
        self._cache[symbol] = snapshot
        return snapshot

    def _symbol_backoff(self, symbol: str) -> _Backoff:
        return self._failures.setdefault(symbol, _Backoff())

    def _failed(self, symbol: str, started: float, reason: str, backoff: _Backoff,
                schedule: tuple[float, float], retry_after: float | None = None) -> MarketSnapshot:
        now = self._clock()
        self._metrics.market_fetch(self.source.name, now - started, False)
        wait = backoff.fail(now, reason, schedule, retry_after)
        log.warning("%s (symbol %s); not asking again for %.0f s", reason, symbol, wait)
        return self._fallback(symbol, reason, wait)

    def _fallback(self, symbol: str, reason: str, retry_after: float) -> MarketSnapshot:
        cached = self._cache.get(symbol)
        if cached is None:
            raise Unavailable(
                f"no market data for {symbol}: {reason}; retry in {max(1, round(retry_after))} s",
                retry_after=retry_after, code="market_data_unavailable", details={"symbol": symbol},
            )
        self._metrics.market_data_age(symbol, self._clock() - cached.fetched_at)
        return MarketSnapshot(cached.series, cached.fetched_at, stale=True,
                              stale_reason=f"the last good data is served because {reason}")
