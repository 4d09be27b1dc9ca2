"""The yfinance source, with a fake at the network boundary (``yfinance.Ticker``)."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import pandas as pd
import pytest
import yfinance
import yfinance.exceptions as yfe
from lstm_predictor.daemon.market_data import (
    EmptyDataError,
    RateLimitedError,
    SourceUnavailableError,
    UnknownSymbolError,
    YFinanceSource,
)

D = dt.date


def frame(closes: list[float], volumes: list[float] | None = None, start: str = "2024-01-02") -> pd.DataFrame:
    """What ``Ticker.history`` answers: a tz-aware daily index and OHLCV columns."""
    index = pd.date_range(start, periods=len(closes), freq="B", tz="America/Sao_Paulo", name="Date")
    return pd.DataFrame(
        {"Open": closes, "High": closes, "Low": closes, "Close": closes, "Volume": volumes or [1000.0] * len(closes)},
        index=index,
    )


class FakeYahoo:
    """Stands in for ``yfinance.Ticker``; records every history() call."""

    def __init__(self, answer: pd.DataFrame | Exception) -> None:
        self.answer = answer
        self.calls: list[tuple[str, dict]] = []

    def __call__(self, symbol: str) -> FakeYahoo:
        self.symbol = symbol
        return self

    def history(self, **kwargs) -> pd.DataFrame:
        self.calls.append((self.symbol, kwargs))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@pytest.fixture
def yahoo(monkeypatch: pytest.MonkeyPatch):
    def install(answer: pd.DataFrame | Exception) -> FakeYahoo:
        fake = FakeYahoo(answer)
        monkeypatch.setattr(yfinance, "Ticker", fake)
        return fake

    return install


def test_fetch_returns_cleaned_closes_and_always_passes_auto_adjust(yahoo, tmp_path: Path) -> None:
    fake = yahoo(frame([10.0, 10.5, 10.5, 11.0], volumes=[5.0, 5.0, 0.0, 5.0]))
    series = YFinanceSource(tmp_path, auto_adjust=True).fetch("PETR4.SA", D(2024, 1, 2), D(2024, 1, 5))
    assert series.closes.tolist() == [10.0, 10.5, 11.0]
    assert series.dates == (D(2024, 1, 2), D(2024, 1, 3), D(2024, 1, 5))
    assert [(r.date, r.reason.split(" (")[0]) for r in series.dropped] == [(D(2024, 1, 4), "zero volume")]
    assert series.source == "yfinance"
    assert series.column == "Adj Close"  # auto_adjust=True: Yahoo's Close is the adjusted close
    (symbol, kwargs), = fake.calls
    assert symbol == "PETR4.SA"
    assert kwargs["auto_adjust"] is True
    assert (kwargs["start"], kwargs["end"]) == ("2024-01-02", "2024-01-06")  # yfinance's end is exclusive

    raw = YFinanceSource(tmp_path, auto_adjust=False).fetch("PETR4.SA", D(2024, 1, 2), D(2024, 1, 5))
    assert fake.calls[-1][1]["auto_adjust"] is False
    assert raw.column == "Close"


def test_a_second_request_for_a_past_range_is_served_from_the_disk_cache(yahoo, tmp_path: Path) -> None:
    fake = yahoo(frame([10.0, 10.5, 11.0]))
    first = YFinanceSource(tmp_path).fetch("VALE3.SA", D(2024, 1, 2), D(2024, 1, 4))
    second = YFinanceSource(tmp_path).fetch("VALE3.SA", D(2024, 1, 2), D(2024, 1, 4))  # a new process, same cache
    assert len(fake.calls) == 1
    assert second.closes.tolist() == first.closes.tolist() == [10.0, 10.5, 11.0]
    assert second.dates == first.dates
    # A different request (adjustment, range) is a different cache entry.
    YFinanceSource(tmp_path, auto_adjust=False).fetch("VALE3.SA", D(2024, 1, 2), D(2024, 1, 4))
    YFinanceSource(tmp_path).fetch("VALE3.SA", D(2024, 1, 3), D(2024, 1, 4))
    assert len(fake.calls) == 3


def test_a_request_reaching_today_is_downloaded_again_once_stale(yahoo, tmp_path: Path) -> None:
    fake = yahoo(frame([10.0, 10.5]))
    YFinanceSource(tmp_path, fresh_for=3600).fetch("ITUB4.SA", D(2024, 1, 2))
    YFinanceSource(tmp_path, fresh_for=3600).fetch("ITUB4.SA", D(2024, 1, 2))
    assert len(fake.calls) == 1
    YFinanceSource(tmp_path, fresh_for=0).fetch("ITUB4.SA", D(2024, 1, 2))
    assert len(fake.calls) == 2
    assert fake.calls[-1][1]["end"] is None


def test_a_cache_that_cannot_be_written_still_serves_the_download(yahoo, tmp_path: Path) -> None:
    yahoo(frame([10.0, 10.5, 11.0]))
    not_a_dir = tmp_path / "cache"
    not_a_dir.write_text("a file where the cache directory should be")
    series = YFinanceSource(not_a_dir).fetch("PETR4.SA", D(2024, 1, 2), D(2024, 1, 4))
    assert series.closes.tolist() == [10.0, 10.5, 11.0]


def test_without_a_cache_dir_every_fetch_downloads(yahoo) -> None:
    fake = yahoo(frame([10.0, 10.5]))
    source = YFinanceSource(None)
    source.fetch("X", D(2024, 1, 2), D(2024, 1, 3))
    source.fetch("X", D(2024, 1, 2), D(2024, 1, 3))
    assert len(fake.calls) == 2
    assert fake.calls[0][1]["auto_adjust"] is True


@pytest.mark.parametrize(
    ("error", "expected", "message"),
    [
        (yfe.YFRateLimitError(), RateLimitedError, "rate limiting"),
        (yfe.YFTzMissingError("NOPE"), UnknownSymbolError, "does not know this symbol"),
        (yfe.YFPricesMissingError("NOPE", "(1d 2024-01-02 -> 2024-01-04)"), EmptyDataError, "no prices"),
        (ConnectionError("network is unreachable"), SourceUnavailableError, "network is unreachable"),
    ],
)
def test_yfinance_failures_become_market_data_errors(yahoo, tmp_path: Path, error, expected, message) -> None:
    yahoo(error)
    with pytest.raises(expected, match=message):
        YFinanceSource(tmp_path).fetch("NOPE", D(2024, 1, 2), D(2024, 1, 3))
    assert not list(tmp_path.iterdir())  # failures are not cached


def test_rate_limit_carries_a_retry_hint_field(yahoo, tmp_path: Path) -> None:
    yahoo(yfe.YFRateLimitError())
    with pytest.raises(RateLimitedError) as err:
        YFinanceSource(tmp_path).fetch("PETR4.SA")
    assert err.value.retry_after is None  # Yahoo does not say when


def test_an_empty_answer_is_refused(yahoo, tmp_path: Path) -> None:
    yahoo(frame([]))
    with pytest.raises(EmptyDataError, match="returned no rows"):
        YFinanceSource(tmp_path).fetch("PETR4.SA", D(2024, 1, 2), D(2024, 1, 3))


def test_an_unsafe_symbol_is_refused_before_any_request(yahoo, tmp_path: Path) -> None:
    fake = yahoo(frame([1.0]))
    with pytest.raises(UnknownSymbolError, match="not a valid symbol"):
        YFinanceSource(tmp_path).fetch("../../etc/passwd")
    assert fake.calls == []


def test_importing_market_data_does_not_import_yfinance_or_pandas() -> None:
    import subprocess

    code = "import sys, lstm_predictor.daemon.market_data; print('yfinance' in sys.modules, 'pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
