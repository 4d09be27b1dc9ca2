"""The service endpoints: index, health, Prometheus metrics and the JSON monitoring views."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from lstm_predictor import __version__

from .jsonio import json_response
from .metrics import PREFIX, Metrics
from .openapi import operation
from .registry import ServedModel
from .schemas import (
    HealthResponse,
    ModelHealth,
    ModelInfoQuery,
    ModelInfoResponse,
    ProcessStats,
    RequestStats,
    RootResponse,
    StatsResponse,
)
from .state import STATE

SERVICE = "lstm-predictor"
TAGS = ("Service",)
LINKS = {
    "health": "/health",
    "predict": "/predict",
    "predict_live": "/predict/live",
    "predict_forecast": "/predict/forecast",
    "metrics": "/metrics",
    "monitoring_stats": "/monitoring/stats",
    "model_info": "/monitoring/model/info",
    "openapi": "/openapi.json",
    "docs": "/docs",
    "kserve_v2": "/v2",
}

routes = web.RouteTableDef()


@routes.get("/")
@operation(response=RootResponse, tags=TAGS)
async def index(request: web.Request) -> web.Response:
    """The service, its version, the models it serves and links to everything else."""
    registry = request.app[STATE].registry
    return json_response(RootResponse(
        service=SERVICE, version=__version__, models=registry.names,
        default_model=registry.default.name, links=LINKS,
    ))


def _model_health(model: ServedModel) -> ModelHealth:
    bundle = model.bundle
    return ModelHealth(
        loaded=True, symbol=bundle.symbol, version=bundle.version, look_back=bundle.look_back,
        normalisation=bundle.normalisation, variant=model.variant, queued=model.batcher.queued,
    )


@routes.get("/health")
@operation(response=HealthResponse, alternatives={503: HealthResponse}, tags=TAGS)
async def health(request: web.Request) -> web.Response:
    """Health: ``healthy`` (200), ``degraded`` (200: serving, but the last reload failed),
    or 503 while starting or shutting down."""
    state = request.app[STATE]
    models = state.registry.models
    if state.stopping:
        status = "stopping"
    elif not state.ready or not models:
        status = "starting"
    elif state.last_reload is not None and not state.last_reload.ok:
        status = "degraded"
    else:
        status = "healthy"
    body = HealthResponse(
        status=status,
        model_loaded=bool(models),
        models={name: _model_health(model) for name, model in models.items()},
        version=__version__,
        uptime_seconds=round(state.uptime_seconds, 3),
        last_reload=state.last_reload,
    )
    return json_response(body, status=200 if status in ("healthy", "degraded") else 503)


@routes.get("/metrics")
@operation(media_type="text/plain", tags=TAGS)
async def metrics(request: web.Request) -> web.Response:
    """Prometheus metrics in the text exposition format."""
    body, content_type = request.app[STATE].metrics.render()
    return web.Response(body=body, headers={"Content-Type": content_type})


def _counts(metrics: Metrics) -> tuple[tuple[int, int, int], dict[str, int]]:
    """Request totals (all, 4xx, 5xx) and predictions by kind, read from the Prometheus
    metrics so that the JSON view and /metrics can never disagree."""
    total = client = server = 0
    predictions: dict[str, int] = {}
    for family in metrics.collect():
        if family.name == PREFIX + "http_requests":
            for sample in family.samples:
                count = int(sample.value)
                total += count
                status = sample.labels["status"]
                client += count if status.startswith("4") else 0
                server += count if status.startswith("5") else 0
        elif family.name == PREFIX + "predictions":
            for sample in family.samples:
                kind = sample.labels["kind"]
                predictions[kind] = predictions.get(kind, 0) + int(sample.value)
    return (total, client, server), predictions


@routes.get("/monitoring/stats")
@operation(response=StatsResponse, tags=TAGS)
async def stats(request: web.Request) -> web.Response:
    """Process CPU and memory, uptime, and request and prediction counts, as JSON."""
    state = request.app[STATE]
    process = state.process
    with process.oneshot():
        rss = process.memory_info().rss
        proc = ProcessStats(
            pid=process.pid, cpu_percent=process.cpu_percent(None), memory_rss_bytes=rss,
            memory_rss_mb=round(rss / 2**20, 1), threads=process.num_threads(),
        )
    (total, client, server), predictions = _counts(state.metrics)
    requests = RequestStats(total=total, in_flight=state.in_flight, client_errors=client, server_errors=server)
    return json_response(StatsResponse(
        uptime_seconds=round(state.uptime_seconds, 3),
        started_at=dt.datetime.fromtimestamp(state.started_at, dt.timezone.utc),
        process=proc, requests=requests, predictions=predictions, models=state.registry.names,
    ))


def _section(meta: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    value = meta.get(key)
    return value if isinstance(value, dict) else None


@routes.get("/monitoring/model/info")
@operation(query=ModelInfoQuery, response=ModelInfoResponse, errors=(404,), tags=TAGS)
async def model_info(request: web.Request) -> web.Response:
    """A model's bundle metadata: metrics per split beside the persistence baseline, the
    training data's period and split dates, conversion parity, tools. ``?symbol=`` picks
    the model (default: the default model)."""
    registry = request.app[STATE].registry
    model = registry.get(request.query.get("symbol"))
    bundle = model.bundle
    meta = bundle.metadata
    return json_response(ModelInfoResponse(
        model_name=model.name, model_version=bundle.version, symbol=bundle.symbol,
        look_back=bundle.look_back, normalisation=bundle.normalisation, variant=model.variant,
        path=str(bundle.path), created_at=meta.get("created_at"),
        metrics=_section(meta, "metrics"), data=_section(meta, "data"), parity=_section(meta, "parity"),
        training=_section(meta, "training"), tools=_section(meta, "tools"), files=meta["files"],
        served_models=registry.names,
    ))
