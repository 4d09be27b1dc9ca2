"""From model outputs to API answers: one-step predictions and recursive forecasts.

Shared by the HTTP routes and ``lstm-predictor predict`` so that both report a
prediction the same way. Values are rounded only here, for display; a forecast
feeds its full-precision predictions back into the next window.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable

import numpy as np

from .bundle import Bundle
from .engine import Prediction
from .market_data.service import MarketSnapshot
from .schemas import (
    DataFreshness,
    ForecastDay,
    ForecastResponse,
    LivePredictResponse,
    PredictResponse,
)
from .trading_calendar import (
    b3_today,
    next_trading_day,
    previous_trading_day,
    trading_days_after,
)
from .windows import check_predictions

PRICE_DIGITS = 4
RATIO_DIGITS = 6
PCT_DIGITS = 4
MS_DIGITS = 3


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def change_pct(new: float, old: float) -> float:
    return round((new / old - 1.0) * 100.0, PCT_DIGITS)


def prediction_response(
    *,
    model_name: str,
    bundle: Bundle,
    window: np.ndarray,
    prediction: Prediction,
    last_date: dt.date | None,
    seconds: float,
    data: DataFreshness | None = None,
) -> PredictResponse:
    """The answer for one window (``prediction`` holds exactly that window's result);
    with ``data``, the live answer that also says where the closes came from."""
    price = float(prediction.prices[0])
    last_known = float(window[-1])
    extra = {} if data is None else {"data": data}
    return (PredictResponse if data is None else LivePredictResponse)(
        symbol=bundle.symbol,
        predicted_price=round(price, PRICE_DIGITS),
        predicted_ratio=round(float(prediction.ratios[0]), RATIO_DIGITS),
        reference_price=round(float(prediction.refs[0]), PRICE_DIGITS),
        last_known_price=round(last_known, PRICE_DIGITS),
        expected_change_pct=change_pct(price, last_known),
        prediction_for_date=None if last_date is None else next_trading_day(last_date),
        last_data_date=last_date,
        inference_time_ms=round(seconds * 1000.0, MS_DIGITS),
        timestamp=utc_now(),
        model_name=model_name,
        model_version=bundle.version,
        **extra,
    )


def freshness(snapshot: MarketSnapshot, today: dt.date | None = None) -> DataFreshness:
    """How current a snapshot is. Stale when the source failed (the last good copy is
    served) or when it lacks a B3 session that has already closed before today."""
    today = today or b3_today()
    last = snapshot.series.end
    reason = snapshot.stale_reason
    latest_closed = previous_trading_day(today)
    if reason is None and last < latest_closed:
        reason = f"the source's last close is {last}, but B3 has traded since (last session before today: {latest_closed})"
    return DataFreshness(
        source=snapshot.series.source,
        last_date=last,
        age_days=(today - last).days,
        stale=reason is not None,
        stale_reason=reason,
    )


async def forecast(
    run_steps: Callable[[np.ndarray, int], Awaitable[Prediction]], window: np.ndarray, base_date: dt.date, days: int
) -> list[ForecastDay]:
    """Predict ``days`` trading days ahead. ``run_steps(window, days)`` makes the recursion
    (each step's full-precision prediction the newest close of the next step's window,
    ``ServedModel.forecast``); this dates and reports its steps."""
    steps = await run_steps(window, days)
    check_predictions(steps.prices)  # before the day-to-day changes divide by them
    base_price = float(window[-1])
    previous = base_price
    out: list[ForecastDay] = []
    dates = trading_days_after(base_date, days)
    for day, (date, price, ratio) in enumerate(zip(dates, steps.prices.tolist(), steps.ratios.tolist()), start=1):
        out.append(
            ForecastDay(
                day=day,
                date=date,
                predicted_price=round(price, PRICE_DIGITS),
                predicted_ratio=round(ratio, RATIO_DIGITS),
                change_pct=change_pct(price, base_price),
                change_from_previous_pct=change_pct(price, previous),
            )
        )
        previous = price
    return out


def forecast_response(
    *,
    model_name: str,
    bundle: Bundle,
    window: np.ndarray,
    days: list[ForecastDay],
    base_date: dt.date,
    last_date: dt.date | None,
    seconds: float,
    data: DataFreshness | None,
) -> ForecastResponse:
    return ForecastResponse(
        symbol=bundle.symbol,
        days=len(days),
        last_known_price=round(float(window[-1]), PRICE_DIGITS),
        base_date=base_date,
        last_data_date=last_date,
        forecast=days,
        inference_time_ms=round(seconds * 1000.0, MS_DIGITS),
        timestamp=utc_now(),
        model_name=model_name,
        model_version=bundle.version,
        data=data,
    )
