"""Prometheus metrics for the daemon, cheap enough to record on every request.

Recording touches only plain Python dicts, ints and floats: no lock, no
``prometheus_client`` metric object, no string formatting beyond ``str(status)``.
The numbers become Prometheus metric families only when ``/metrics`` is scraped,
in :meth:`Metrics.collect`, which the registry calls from :meth:`Metrics.render`.

Threading contract, which is what makes the lock-free state safe: every series
has exactly one writing thread, because a read-modify-write such as
``counts[i] += 1`` is not atomic across threads. All methods, ``render``
included, are called from the event-loop thread, except :meth:`Metrics.inference`,
which a model's batcher calls from its one worker thread (the only thread that
knows how long a run took); that model's inference and batch-size series are
written by that thread alone. Creating a series is a single ``dict.setdefault``
and the scrape copies dict keys in one C-level call, both atomic under the GIL,
so a scrape racing an inference sees at worst that run's sum without its bucket.

Label values are bounded whatever clients send: routes are the application's
route templates (see :func:`route_label`), methods outside the standard set
become ``other``, a model label must name a model that has been loaded (else
``other``), a data-age symbol must belong to a loaded model (else it is not
recorded), a market-data source is reduced to its kind (``csv:/some/dir`` ->
``csv``), and a prediction kind must be one of :data:`KINDS`.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from importlib import metadata as dist_metadata
from typing import Any, Iterator, Mapping, Sequence

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from lstm_predictor import __version__

from .bundle import INT8_FILE, MODEL_FILE, Bundle

PREFIX = "lstm_predictor_"

# The classic text exposition format, which generate_latest writes and every
# Prometheus release parses.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

KINDS = ("manual", "live", "forecast", "v2")
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER = "other"
UNMATCHED = "unmatched"

# One fp32 window runs in about 0.5 ms and a batch of 32 in about 7 ms, so the
# buckets are dense from 25 us to 10 ms (histogram_quantile interpolates inside
# a bucket) and coarse above, up to the seconds a market-data fetch can add.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.000025, 0.00005, 0.0001, 0.00015, 0.0002, 0.0003, 0.0004, 0.0005, 0.00075,
    0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
# A CSV read takes milliseconds, a yfinance download up to its timeout.
FETCH_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
# Windows per onnxruntime run; the batcher's default maximum is 32, but a
# single request carrying more windows runs whole.
BATCH_BUCKETS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


def route_label(request: Any) -> str:
    """The route template of an aiohttp request (``/v2/models/{name}/infer``), never its raw path.

    Requests that matched no route (404s, 405s) share the label ``unmatched``,
    so a scanner probing random paths cannot create series.
    """
    route = getattr(request.match_info, "route", None)
    resource = getattr(route, "resource", None)
    return resource.canonical if resource is not None else UNMATCHED


class _Histogram:
    """One label set's histogram: per-bucket (not cumulative) counts, the last for +Inf."""

    __slots__ = ("counts", "total")

    def __init__(self, n_bounds: int) -> None:
        self.counts = [0] * (n_bounds + 1)
        self.total = 0.0


class _HistogramVec:
    """Histograms keyed by a tuple of label values, sharing one set of upper bounds."""

    __slots__ = ("bounds", "series", "_les")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.series: dict[tuple[str, ...], _Histogram] = {}
        self._les = [floatToGoString(b) for b in self.bounds] + ["+Inf"]

    def touch(self, key: tuple[str, ...]) -> _Histogram:
        hist = self.series.get(key)
        if hist is None:
            # setdefault, not assignment: a series created concurrently by its
            # writer thread and by models_loaded() must not lose the writer's counts.
            hist = self.series.setdefault(key, _Histogram(len(self.bounds)))
        return hist

    def observe(self, key: tuple[str, ...], value: float) -> None:
        hist = self.touch(key)
        # bisect_left finds the first bound >= value: Prometheus buckets are "le".
        hist.counts[bisect_left(self.bounds, value)] += 1
        hist.total += value

    def family(self, name: str, documentation: str, labels: Sequence[str]) -> HistogramMetricFamily:
        family = HistogramMetricFamily(name, documentation, labels=labels)
        for key in sorted(self.series):
            hist = self.series[key]
            cumulative, buckets = 0, []
            for le, count in zip(self._les, hist.counts):
                cumulative += count
                buckets.append((le, cumulative))
            family.add_metric(list(key), buckets, hist.total)
        return family


def _counter(name: str, documentation: str, labels: Sequence[str], values: Mapping[tuple[str, ...], float]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=labels)
    for key in sorted(values):
        family.add_metric(list(key), values[key])
    return family


def _gauge(name: str, documentation: str, labels: Sequence[str], values: Mapping[tuple[str, ...], float]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=labels)
    for key in sorted(values):
        family.add_metric(list(key), values[key])
    return family


def _distribution_version(name: str) -> str:
    try:
        return dist_metadata.version(name)
    except dist_metadata.PackageNotFoundError:
        return "unknown"


def _source_kind(source: str) -> str:
    """``csv:/srv/prices`` -> ``csv``: the label names the kind of source, not a path."""
    return source.split(":", 1)[0] or OTHER


class Metrics:
    """The daemon's metrics and the registry that exposes them.

    Call every method from the event-loop thread, except :meth:`inference`
    (see the module docstring).
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        # process_* (CPU seconds, resident and virtual memory, open fds, start
        # time), python_info and python_gc_*: the standard collectors, which
        # read /proc and the interpreter at scrape time.
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.registry.register(self)

        self._build = (__version__, _distribution_version("onnxruntime"))
        self._in_flight = 0
        self._requests: dict[tuple[str, str, str], int] = {}
        self._request_seconds = _HistogramVec(LATENCY_BUCKETS)
        self._predictions: dict[tuple[str, str], int] = {}
        self._inference_seconds = _HistogramVec(LATENCY_BUCKETS)
        self._batch_size = _HistogramVec(BATCH_BUCKETS)
        self._queue_wait = _HistogramVec(LATENCY_BUCKETS)
        # Every model name or symbol ever loaded: counters of a model dropped
        # by a reload keep their label; anything else is "other".
        self._known_models: set[str] = set()
        self._loaded_symbols: frozenset[str] = frozenset()
        self._model_info: dict[tuple[str, ...], int] = {}
        self._models_loaded = 0
        self._reloads = {("success",): 0, ("failure",): 0}
        self._last_reload_ok = 1
        self._fetch_seconds = _HistogramVec(FETCH_BUCKETS)
        self._fetch_failures: dict[tuple[str], int] = {}
        self._cache = {"hit": 0, "miss": 0}
        # symbol -> time.monotonic() at which its data was fetched, so the
        # exposed age keeps growing between updates instead of freezing.
        self._fetched_at: dict[str, float] = {}

    # --- HTTP ---------------------------------------------------------------

    def request_started(self) -> None:
        self._in_flight += 1

    def request_finished(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one finished request. ``route`` is :func:`route_label` of the request."""
        self._in_flight -= 1
        key = (route, method if method in METHODS else OTHER, str(status))
        self._requests[key] = self._requests.get(key, 0) + 1
        self._request_seconds.observe((route,), seconds)

    # --- predictions and inference ------------------------------------------

    def _model(self, model: str) -> str:
        return model if model in self._known_models else OTHER

    def prediction(self, kind: str, model: str, count: int = 1) -> None:
        """Count ``count`` predicted values (windows, or forecast days) served by ``model``."""
        if kind not in KINDS:
            raise ValueError(f"prediction kind {kind!r} is not one of {', '.join(KINDS)}")
        key = (kind, self._model(model))
        self._predictions[key] = self._predictions.get(key, 0) + count

    def inference(self, model: str, seconds: float, batch_size: int) -> None:
        """One onnxruntime run of ``batch_size`` windows that took ``seconds``.

        The one method that may be called off the loop: from ``model``'s batcher
        worker thread, the single writer of this model's series.
        """
        key = (self._model(model),)
        self._inference_seconds.observe(key, seconds)
        self._batch_size.observe(key, batch_size)

    def queue_wait(self, model: str, seconds: float) -> None:
        """How long a batch's oldest submission waited in the batcher's queue."""
        self._queue_wait.observe((self._model(model),), seconds)

    # --- market data ----------------------------------------------------------

    def market_fetch(self, source: str, seconds: float, ok: bool) -> None:
        """One fetch from a price source (a cache miss that went to the source)."""
        key = (_source_kind(source),)
        self._fetch_seconds.observe(key, seconds)
        failures = self._fetch_failures.get(key, 0)
        self._fetch_failures[key] = failures if ok else failures + 1

    def market_cache(self, hit: bool) -> None:
        self._cache["hit" if hit else "miss"] += 1

    def market_data_age(self, symbol: str, seconds: float) -> None:
        """``symbol``'s cached prices were fetched from their source ``seconds`` ago.

        Call it whenever the cache entry changes or is served; the exposed age
        keeps counting from there. Symbols of no loaded model are ignored.
        """
        if symbol in self._loaded_symbols:
            self._fetched_at[symbol] = time.monotonic() - seconds

    # --- models -----------------------------------------------------------------

    def models_loaded(self, bundles: Sequence[Bundle], variants: Mapping[str, str] | None = None) -> None:
        """The set of models now serving (after start-up or a reload).

        ``variants`` maps a bundle name to the variant it serves (``fp32`` or
        ``int8``); absent names serve ``fp32``. Series for every kind of
        prediction and for inference are created at zero, so that ``rate()``
        sees a model's first request and dashboards show idle models.
        """
        variants = variants or {}
        info: dict[tuple[str, ...], int] = {}
        for bundle in bundles:
            variant = variants.get(bundle.name, "fp32")
            sha256 = bundle.sha256(INT8_FILE if variant == "int8" else MODEL_FILE)
            info[(bundle.name, bundle.version, sha256, bundle.normalisation, bundle.symbol, variant)] = 1
            self._known_models.update((bundle.name, bundle.symbol))
            for kind in KINDS:
                self._predictions.setdefault((kind, bundle.name), 0)
            for vec in (self._inference_seconds, self._batch_size, self._queue_wait):
                vec.touch((bundle.name,))
        self._model_info = info
        self._models_loaded = len(bundles)
        self._loaded_symbols = frozenset(bundle.symbol for bundle in bundles)
        self._fetched_at = {s: t for s, t in self._fetched_at.items() if s in self._loaded_symbols}

    def reload(self, ok: bool) -> None:
        """A reload finished; on failure the previous models keep serving."""
        self._reloads[("success" if ok else "failure",)] += 1
        self._last_reload_ok = int(ok)

    # --- exposition -------------------------------------------------------------

    def render(self) -> tuple[bytes, str]:
        """The body and content type of a ``GET /metrics`` response."""
        return generate_latest(self.registry), CONTENT_TYPE

    def collect(self) -> Iterator[Metric]:
        """Called by the registry at scrape time: turn the plain state into metric families."""
        p = PREFIX
        version, ort_version = self._build
        yield _gauge(f"{p}build_info", "Version of lstm-predictor and of onnxruntime; always 1.",
                     ["version", "onnxruntime_version"], {(version, ort_version): 1})
        yield _counter(f"{p}http_requests", "HTTP requests answered, by route template, method and status code.",
                       ["route", "method", "status"], self._requests)
        yield self._request_seconds.family(f"{p}http_request_duration_seconds",
                                           "Time from receiving an HTTP request to finishing its response, by route template.",
                                           ["route"])
        yield _gauge(f"{p}http_requests_in_flight", "HTTP requests being handled now.", [], {(): self._in_flight})
        yield _counter(f"{p}predictions", "Predicted values served (one per window or forecast day), by kind and model.",
                       ["kind", "model"], self._predictions)
        yield self._inference_seconds.family(f"{p}inference_duration_seconds",
                                             "Duration of one onnxruntime run (one batch), by model.", ["model"])
        yield self._batch_size.family(f"{p}inference_batch_size", "Windows per onnxruntime run, by model.", ["model"])
        yield self._queue_wait.family(f"{p}queue_wait_seconds",
                                      "Time the oldest request of a batch waited in the batcher's queue, by model.",
                                      ["model"])
        yield _gauge(f"{p}models_loaded", "Models currently serving.", [], {(): self._models_loaded})
        yield _gauge(f"{p}model_info", "The serving models: version, sha256 of the served ONNX file, normalisation, symbol and variant; always 1.",
                     ["model", "version", "sha256", "normalisation", "symbol", "variant"], self._model_info)
        yield _counter(f"{p}reloads", "Model reloads, by result (on failure the previous models keep serving).",
                       ["result"], self._reloads)
        yield _gauge(f"{p}last_reload_successful", "1 unless the most recent reload failed.",
                     [], {(): self._last_reload_ok})
        yield self._fetch_seconds.family(f"{p}market_data_fetch_duration_seconds",
                                         "Duration of fetches from a market-data source, failed ones included, by source kind.",
                                         ["source"])
        yield _counter(f"{p}market_data_fetch_failures", "Failed fetches from a market-data source, by source kind.",
                       ["source"], self._fetch_failures)
        yield _counter(f"{p}market_data_cache_hits", "Price lookups answered from the in-memory cache.", [],
                       {(): self._cache["hit"]})
        yield _counter(f"{p}market_data_cache_misses", "Price lookups that had to go to the source.", [],
                       {(): self._cache["miss"]})
        now = time.monotonic()
        yield _gauge(f"{p}market_data_age_seconds", "Seconds since the cached prices of a served symbol were fetched from their source.",
                     ["symbol"], {(s,): now - t for s, t in self._fetched_at.items()})
