"""Prometheus metrics for the daemon, cheap enough to record on every request.

Recording touches only plain Python dicts, ints and floats: no lock, no
``prometheus_client`` metric object, no string formatting beyond ``str(status)``.
The numbers become text only when ``/metrics`` is scraped. The scrape runs on
the event loop, so it is written directly in the text exposition format with
each series' name and labels formatted once and cached: building
``prometheus_client`` metric families and formatting them with
``generate_latest`` took 4 to 5 ms for a few hundred samples, a stall every
request arriving during a scrape would pay. The standard process and platform
collectors, a score of samples, still go through ``generate_latest``.

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
from collections.abc import Iterable, Iterator, Mapping, Sequence
from importlib import metadata as dist_metadata
from itertools import accumulate
from typing import Any, NamedTuple

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from lstm_predictor import __version__

from .bundle import INT8_FILE, MODEL_FILE, Bundle

PREFIX = "lstm_predictor_"

# The classic text exposition format, which render() writes and every
# Prometheus release parses.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

KINDS = ("manual", "live", "forecast", "v2")
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER = "other"
UNMATCHED = "unmatched"

Key = tuple[str, ...]  # label values, in the order of a family's label names

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

    __slots__ = ("bounds", "les", "series")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.series: dict[Key, _Histogram] = {}
        self.les = [floatToGoString(b) for b in self.bounds] + ["+Inf"]

    def touch(self, key: Key) -> _Histogram:
        hist = self.series.get(key)
        if hist is None:
            # setdefault, not assignment: a series created concurrently by its
            # writer thread and by models_loaded() must not lose the writer's counts.
            hist = self.series.setdefault(key, _Histogram(len(self.bounds)))
        return hist

    def observe(self, key: Key, value: float) -> None:
        hist = self.touch(key)
        # bisect_left finds the first bound >= value: Prometheus buckets are "le".
        hist.counts[bisect_left(self.bounds, value)] += 1
        hist.total += value



def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')




class _Family(NamedTuple):
    """One metric family as the state holds it: ``data`` maps label values to a
    number (counter, gauge) or is a :class:`_HistogramVec` (histogram)."""

    kind: str  # "counter" (name without _total), "gauge" or "histogram"
    name: str
    doc: str
    labels: Key
    data: Mapping[Key, float] | _HistogramVec


class _TextWriter:
    """Writes families in the text exposition format (version 0.0.4).

    Each series' ``name{labels} `` prefix is formatted once and cached; label
    values are bounded (see the module docstring), and so is the cache.
    """

    def __init__(self) -> None:
        self._prefixes: dict[tuple[str, Key], str] = {}
        self._bucket_prefixes: dict[tuple[str, Key], tuple[list[str], str, str]] = {}

    def write(self, families: Iterable[_Family]) -> str:
        out: list[str] = []
        for family in families:
            if isinstance(family.data, _HistogramVec):
                self._histogram(out, family, family.data)
            else:
                self._scalar(out, family, family.data)
        return "".join(out)

    @staticmethod
    def _labels(names: Key, key: Key, le: str | None = None) -> str:
        # Sorted by label name, as prometheus_client writes them.
        pairs = list(zip(names, key)) + ([("le", le)] if le is not None else [])
        return ",".join(f'{n}="{_escape(v)}"' for n, v in sorted(pairs))

    def _scalar(self, out: list[str], family: _Family, values: Mapping[Key, float]) -> None:
        name = f"{family.name}_total" if family.kind == "counter" else family.name
        out.append(f"# HELP {name} {family.doc}\n# TYPE {name} {family.kind}\n")
        for key in sorted(values):
            prefix = self._prefixes.get((name, key))
            if prefix is None:
                labels = self._labels(family.labels, key)
                prefix = self._prefixes[(name, key)] = f"{name}{{{labels}}} " if labels else f"{name} "
            out.append(f"{prefix}{floatToGoString(values[key])}\n")

    def _histogram(self, out: list[str], family: _Family, vec: _HistogramVec) -> None:
        name = family.name
        out.append(f"# HELP {name} {family.doc}\n# TYPE {name} histogram\n")
        for key in sorted(vec.series):
            hist = vec.series[key]
            prefixes = self._bucket_prefixes.get((name, key))
            if prefixes is None:
                labels = self._labels(family.labels, key)
                braces = f"{{{labels}}}" if labels else ""
                prefixes = self._bucket_prefixes[(name, key)] = (
                    [f"{name}_bucket{{{self._labels(family.labels, key, le)}}} " for le in vec.les],
                    f"{name}_count{braces} ",
                    f"{name}_sum{braces} ",
                )
            buckets, count_prefix, sum_prefix = prefixes
            cumulative = 0
            for prefix, count in zip(buckets, hist.counts):
                cumulative += count
                # Counts are ints below 1e16: "<n>.0" is what floatToGoString writes, without its cost.
                out.append(f"{prefix}{cumulative}.0\n")
            out.append(f"{count_prefix}{cumulative}.0\n{sum_prefix}{floatToGoString(hist.total)}\n")


def _metric_family(family: _Family) -> Metric:
    """The same family as a ``prometheus_client`` object, for in-process readers."""
    labels = list(family.labels)
    if isinstance(family.data, _HistogramVec):
        vec = family.data
        histogram = HistogramMetricFamily(family.name, family.doc, labels=labels)
        for key, hist in sorted(vec.series.items()):
            histogram.add_metric(list(key), list(zip(vec.les, accumulate(hist.counts))), hist.total)
        return histogram
    scalar = (CounterMetricFamily if family.kind == "counter" else GaugeMetricFamily)(family.name, family.doc, labels=labels)
    for key, value in sorted(family.data.items()):
        scalar.add_metric(list(key), value)
    return scalar


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
        # time) and python_info: the standard collectors, which read /proc and
        # the interpreter at scrape time.
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self._writer = _TextWriter()

        self._build = (__version__, _distribution_version("onnxruntime"))
        self._in_flight = 0
        self._requests: dict[Key, int] = {}
        self._request_seconds = _HistogramVec(LATENCY_BUCKETS)
        self._predictions: dict[Key, int] = {}
        self._inference_seconds = _HistogramVec(LATENCY_BUCKETS)
        self._batch_size = _HistogramVec(BATCH_BUCKETS)
        self._queue_wait = _HistogramVec(LATENCY_BUCKETS)
        # Every model name or symbol ever loaded: counters of a model dropped
        # by a reload keep their label; anything else is "other".
        self._known_models: set[str] = set()
        self._loaded_symbols: frozenset[str] = frozenset()
        self._model_info: dict[Key, int] = {}
        self._models_loaded = 0
        self._reloads = {("success",): 0, ("failure",): 0}
        self._last_reload_ok = 1
        self._fetch_seconds = _HistogramVec(FETCH_BUCKETS)
        self._fetch_failures: dict[Key, int] = {}
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
        info: dict[Key, int] = {}
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
        return self._writer.write(self._families()).encode() + generate_latest(self.registry), CONTENT_TYPE

    def collect(self) -> Iterator[Metric]:
        """The daemon's own metrics as ``prometheus_client`` families, for in-process readers
        (built from the same families as :meth:`render`, so the two never disagree)."""
        return map(_metric_family, self._families())

    def _families(self) -> Iterator[_Family]:
        p = PREFIX
        yield _Family("gauge", f"{p}build_info", "Version of lstm-predictor and of onnxruntime; always 1.",
                      ("version", "onnxruntime_version"), {self._build: 1})
        yield _Family("counter", f"{p}http_requests", "HTTP requests answered, by route template, method and status code.",
                      ("route", "method", "status"), self._requests)
        yield _Family("histogram", f"{p}http_request_duration_seconds",
                      "Time from receiving an HTTP request to finishing its response, by route template.",
                      ("route",), self._request_seconds)
        yield _Family("gauge", f"{p}http_requests_in_flight", "HTTP requests being handled now.",
                      (), {(): self._in_flight})
        yield _Family("counter", f"{p}predictions",
                      "Predicted values served (one per window or forecast day), by kind and model.",
                      ("kind", "model"), self._predictions)
        yield _Family("histogram", f"{p}inference_duration_seconds",
                      "Duration of one onnxruntime run (one batch), by model.", ("model",), self._inference_seconds)
        yield _Family("histogram", f"{p}inference_batch_size", "Windows per onnxruntime run, by model.",
                      ("model",), self._batch_size)
        yield _Family("histogram", f"{p}queue_wait_seconds",
                      "Time the oldest request of a batch waited in the batcher's queue, by model.",
                      ("model",), self._queue_wait)
        yield _Family("gauge", f"{p}models_loaded", "Models currently serving.", (), {(): self._models_loaded})
        yield _Family("gauge", f"{p}model_info",
                      "The serving models: version, sha256 of the served ONNX file, normalisation, symbol and variant; always 1.",
                      ("model", "version", "sha256", "normalisation", "symbol", "variant"), self._model_info)
        yield _Family("counter", f"{p}reloads", "Model reloads, by result (on failure the previous models keep serving).",
                      ("result",), self._reloads)
        yield _Family("gauge", f"{p}last_reload_successful", "1 unless the most recent reload failed.",
                      (), {(): self._last_reload_ok})
        yield _Family("histogram", f"{p}market_data_fetch_duration_seconds",
                      "Duration of fetches from a market-data source, failed ones included, by source kind.",
                      ("source",), self._fetch_seconds)
        yield _Family("counter", f"{p}market_data_fetch_failures",
                      "Failed fetches from a market-data source, by source kind.", ("source",), self._fetch_failures)
        yield _Family("counter", f"{p}market_data_cache_hits", "Price lookups answered from the in-memory cache.",
                      (), {(): self._cache["hit"]})
        yield _Family("counter", f"{p}market_data_cache_misses", "Price lookups that had to go to the source.",
                      (), {(): self._cache["miss"]})
        now = time.monotonic()
        yield _Family("gauge", f"{p}market_data_age_seconds",
                      "Seconds since the cached prices of a served symbol were fetched from their source.",
                      ("symbol",), {(s,): now - t for s, t in self._fetched_at.items()})
