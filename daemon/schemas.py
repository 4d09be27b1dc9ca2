"""Request and response types of the HTTP API, as msgspec Structs.

msgspec decodes and validates a request body in one C pass and encodes a
response without building dicts, which keeps a handler's Python work small.
These Structs are also the single source of the OpenAPI document. Field names
of the service this daemon replaces are kept as they were; new fields are only
ever added.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from msgspec import Meta, Struct

MAX_FORECAST_DAYS = 30

Symbol = Annotated[str, Meta(description="Model name or ticker symbol, e.g. PETR4.SA; the default model when omitted")]
# Documented only: validate_prices refuses a close <= 0 itself, naming the element (422 invalid_prices).
Close = Annotated[float, Meta(extra_json_schema={"exclusiveMinimum": 0})]
Prices = Annotated[
    list[Close],
    Meta(description="Exactly look_back daily closes, oldest first, each finite and greater than 0"),
]
LastDate = Annotated[
    dt.date,
    Meta(description="Date of the last price given; the prediction is then dated to the next B3 trading day"),
]


# -- requests -------------------------------------------------------------------------------


class PredictRequest(Struct, kw_only=True):
    prices: Prices
    symbol: Symbol | None = None
    last_date: LastDate | None = None


class LiveRequest(Struct, kw_only=True):
    symbol: Symbol | None = None


class ForecastRequest(Struct, kw_only=True):
    symbol: Symbol | None = None
    days: Annotated[int, Meta(ge=1, le=MAX_FORECAST_DAYS, description="Trading days to forecast")] = 5
    prices: Prices | None = None
    last_date: LastDate | None = None


class ModelInfoQuery(Struct, kw_only=True):
    symbol: Symbol | None = None


# -- responses ------------------------------------------------------------------------------


class PredictResponse(Struct, kw_only=True):
    symbol: str
    predicted_price: float
    predicted_ratio: float
    reference_price: float
    last_known_price: float
    expected_change_pct: float
    prediction_for_date: dt.date | None
    last_data_date: dt.date | None
    inference_time_ms: float
    timestamp: dt.datetime
    model_name: str
    model_version: str


class DataFreshness(Struct, kw_only=True):
    """Where market closes came from and how old they are."""

    source: str  # "csv:/path/PETR4.SA.csv" | "yfinance"
    last_date: dt.date
    age_days: int  # calendar days from last_date to today in São Paulo
    stale: bool  # true when the data is older than it should be; stale_reason says why
    stale_reason: str | None


class LivePredictResponse(PredictResponse, kw_only=True):
    data: DataFreshness


class ForecastDay(Struct, kw_only=True):
    day: int
    date: dt.date
    predicted_price: float
    predicted_ratio: float
    change_pct: float  # against last_known_price
    change_from_previous_pct: float  # against the previous day's prediction (day 1: last_known_price)


class ForecastResponse(Struct, kw_only=True):
    symbol: str
    days: int
    last_known_price: float
    base_date: dt.date
    last_data_date: dt.date | None
    forecast: list[ForecastDay]
    inference_time_ms: float
    timestamp: dt.datetime
    model_name: str
    model_version: str
    data: DataFreshness | None  # null when the request gave the prices


class RootResponse(Struct, kw_only=True):
    service: str
    version: str
    models: list[str]
    default_model: str
    links: dict[str, str]


class ModelHealth(Struct, kw_only=True):
    loaded: bool
    symbol: str
    version: str
    look_back: int
    normalisation: str
    variant: str
    queued: int


class ReloadStatus(Struct, kw_only=True):
    ok: bool
    at: dt.datetime
    message: str


class HealthResponse(Struct, kw_only=True):
    status: str  # healthy | degraded | stopping
    model_loaded: bool
    models: dict[str, ModelHealth]
    version: str
    uptime_seconds: float
    last_reload: ReloadStatus | None


class ProcessStats(Struct, kw_only=True):
    pid: int
    cpu_percent: float
    memory_rss_bytes: int
    memory_rss_mb: float
    threads: int


class RequestStats(Struct, kw_only=True):
    total: int
    in_flight: int
    client_errors: int
    server_errors: int


class StatsResponse(Struct, kw_only=True):
    uptime_seconds: float
    started_at: dt.datetime
    process: ProcessStats
    requests: RequestStats
    predictions: dict[str, int]
    models: list[str]


class ModelInfoResponse(Struct, kw_only=True):
    model_name: str
    model_version: str
    symbol: str
    look_back: int
    normalisation: str
    variant: str
    path: str
    created_at: str | None
    metrics: dict[str, Any] | None
    data: dict[str, Any] | None
    parity: dict[str, Any] | None
    training: dict[str, Any] | None
    tools: dict[str, Any] | None
    files: dict[str, Any]
    served_models: list[str]


class ErrorInfo(Struct, kw_only=True, omit_defaults=True):
    status: int
    code: str
    message: str
    details: dict[str, Any] | None = None


class ErrorResponse(Struct, kw_only=True):
    error: ErrorInfo
