"""The prediction endpoints: given prices, live prices, and multi-day forecasts.

Handlers stay lean (the hot path): decode and validate with msgspec, one
registry lookup, one batched inference, encode. No logging here; the error
middleware renders every failure.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from contextlib import contextmanager

import msgspec
import numpy as np
from aiohttp import web

from .errors import InvalidInput, Unavailable
from .jsonio import decode_body, json_response
from .market_data.service import MarketSnapshot
from .openapi import operation
from .predictions import (
    forecast,
    forecast_response,
    freshness,
    prediction_response,
)
from .registry import ServedModel
from .schemas import (
    DataFreshness,
    ForecastRequest,
    ForecastResponse,
    LivePredictResponse,
    LiveRequest,
    PredictRequest,
    PredictResponse,
)
from .state import STATE, DaemonState
from .trading_calendar import LAST_DATABLE_DAY, b3_today
from .windows import WindowError, check_predictions, check_scale, validate_prices

TAGS = ("Predictions",)
routes = web.RouteTableDef()

_predict_request = msgspec.json.Decoder(PredictRequest)
_live_request = msgspec.json.Decoder(LiveRequest)
_forecast_request = msgspec.json.Decoder(ForecastRequest)


def _last_date(value: dt.date | None) -> dt.date | None:
    if value is not None and value > LAST_DATABLE_DAY:
        raise InvalidInput(f"last_date {value} is too late to date a prediction; the latest accepted is {LAST_DATABLE_DAY}")
    return value


@contextmanager
def _refused_prices(model: ServedModel) -> Iterator[None]:
    """A WindowError inside is a 422 naming the model and its look_back."""
    try:
        yield
    except WindowError as exc:
        raise InvalidInput(str(exc), code="invalid_prices", details={"model": model.name, "look_back": model.look_back}) from None


def _window(prices: list[float], model: ServedModel) -> np.ndarray:
    with _refused_prices(model):
        window = validate_prices(prices, model.look_back)
        check_scale(window, model.bundle.normalisation)
    return window


async def _market_window(state: DaemonState, model: ServedModel) -> tuple[MarketSnapshot, np.ndarray]:
    snapshot = await state.market.get(model.bundle.symbol)
    closes = snapshot.series.closes
    if len(closes) < model.look_back:
        raise Unavailable(
            f"{snapshot.series.source} has only {len(snapshot.series)} closes for {model.bundle.symbol}; "
            f"the model needs {model.look_back}",
            retry_after=None, code="insufficient_market_data",
        )
    return snapshot, closes[-model.look_back:]


@routes.post("/predict")
@operation(request=PredictRequest, response=PredictResponse, errors=(400, 404, 413, 422, 503), tags=TAGS)
async def predict(request: web.Request) -> web.Response:
    """Predict the next close from given prices.

    ``prices`` are exactly the model's look_back closes, oldest first. With
    ``last_date`` (the date of the last price) the answer is dated to the next
    B3 trading day; without it the dates are null.
    """
    state = request.app[STATE]
    body = await decode_body(request, _predict_request)
    model = state.registry.get(body.symbol)
    return await _predict_next(state, model, "manual", _window(body.prices, model), _last_date(body.last_date))


@routes.post("/predict/live")
@operation(request=LiveRequest, response=LivePredictResponse, errors=(400, 404, 413, 422, 503), tags=TAGS)
async def predict_live(request: web.Request) -> web.Response:
    """Predict the next B3 trading day's close from the latest market closes.

    The daemon fetches the closes itself (yfinance or a CSV directory) and says
    how fresh they are in ``data``; when the source fails it serves its last
    good copy marked ``stale``, or answers 503 with ``Retry-After``.
    """
    state = request.app[STATE]
    body = await decode_body(request, _live_request)
    model = state.registry.get(body.symbol)
    snapshot, window = await _market_window(state, model)
    return await _predict_next(state, model, "live", window, snapshot.series.end, freshness(snapshot))


@routes.post("/predict/forecast")
@operation(request=ForecastRequest, response=ForecastResponse, errors=(400, 404, 413, 422, 503), tags=TAGS)
async def predict_forecast(request: web.Request) -> web.Response:
    """Forecast 1 to 30 B3 trading days ahead, recursively.

    Each day's prediction (at full precision) becomes the newest close of the
    next day's window. From the latest market closes, or from ``prices`` (then
    counted from ``last_date``, else from today). Each day reports its change
    against the last known price and against the day before.
    """
    state = request.app[STATE]
    body = await decode_body(request, _forecast_request)
    model = state.registry.get(body.symbol)
    if body.prices is not None:
        window = _window(body.prices, model)
        last_date, data = _last_date(body.last_date), None
        base_date = last_date or b3_today()
    elif body.last_date is not None:
        raise InvalidInput("last_date dates the given prices; send it together with prices", code="invalid_input")
    else:
        snapshot, window = await _market_window(state, model)
        last_date = base_date = snapshot.series.end
        data = freshness(snapshot)
    started = time.perf_counter()
    with _refused_prices(model):
        days = await forecast(model.forecast, window, base_date, body.days)
    seconds = time.perf_counter() - started
    state.metrics.prediction("forecast", model.name, body.days)
    return json_response(forecast_response(
        model_name=model.name, bundle=model.bundle, window=window, days=days,
        base_date=base_date, last_date=last_date, seconds=seconds, data=data,
    ))


async def _predict_next(
    state: DaemonState, model: ServedModel, kind: str, window: np.ndarray,
    last_date: dt.date | None, data: DataFreshness | None = None,
) -> web.Response:
    """One window through the model's batcher, answered in the original service's shape."""
    started = time.perf_counter()
    prediction = await model.predict(window[None, :])
    seconds = time.perf_counter() - started
    with _refused_prices(model):
        check_predictions(prediction.prices)
    state.metrics.prediction(kind, model.name)
    return json_response(prediction_response(
        model_name=model.name, bundle=model.bundle, window=window, prediction=prediction,
        last_date=last_date, seconds=seconds, data=data,
    ))
