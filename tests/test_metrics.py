"""The daemon's Prometheus metrics: what a scrape shows after the daemon records events."""

from __future__ import annotations

import asyncio
import subprocess
import threading
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from lstm_predictor.daemon.bundle import Bundle, TensorSpec
from lstm_predictor.daemon.metrics import KINDS, LATENCY_BUCKETS, PREFIX, Metrics, route_label

FP32_SHA = "a" * 64
INT8_SHA = "b" * 64


def bundle(name: str, symbol: str | None = None, version: str = "2026.01.02-1") -> Bundle:
    return Bundle(
        path=Path("/models") / name,
        name=name,
        version=version,
        symbol=symbol or name,
        look_back=60,
        normalisation="window_first",
        input=TensorSpec("input", (None, 60, 1)),
        output=TensorSpec("output", (None, 1)),
        metadata={"files": {"model.onnx": {"sha256": FP32_SHA}, "model.int8.onnx": {"sha256": INT8_SHA}}},
    )


def scrape(metrics: Metrics) -> list[Sample]:
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain; version=0.0.4")
    return [s for family in text_string_to_metric_families(body.decode()) for s in family.samples]


def samples(metrics: Metrics, name: str) -> dict[frozenset, float]:
    """``{frozenset(labels.items()): value}`` of every sample called ``name``."""
    return {frozenset(s.labels.items()): s.value for s in scrape(metrics) if s.name == name}


def value(metrics: Metrics, name: str, **labels: str) -> float:
    return samples(metrics, name)[frozenset(labels.items())]


def test_every_own_metric_carries_the_prefix_and_the_standard_process_metrics_are_exposed() -> None:
    m = Metrics()
    names = {family.name for family in text_string_to_metric_families(m.render()[0].decode())}
    own = {n for n in names if not n.startswith(("process_", "python_"))}
    assert own and all(n.startswith(PREFIX) for n in own)
    assert {"process_resident_memory_bytes", "process_cpu_seconds", "python_info"} <= names


def busy_metrics() -> Metrics:
    """Metrics after one of every event the daemon records."""
    m = Metrics()
    m.models_loaded([bundle("PETR4.SA")])
    m.request_started()
    m.request_finished("/predict", "POST", 200, 0.0008)
    m.prediction("live", "PETR4.SA")
    m.inference("PETR4.SA", 0.0005, 1)
    m.queue_wait("PETR4.SA", 0.0)
    m.market_fetch("yfinance", 0.7, ok=False)
    m.market_cache(hit=False)
    m.market_data_age("PETR4.SA", 30.0)
    m.reload(ok=False)
    return m


def test_every_counter_sample_ends_in_total() -> None:
    families = list(text_string_to_metric_families(busy_metrics().render()[0].decode()))
    counters = [f for f in families if f.type == "counter"]
    assert len(counters) >= 7
    for family in counters:
        assert {s.name for s in family.samples} == {f"{family.name}_total"}


def test_every_own_family_has_samples_after_one_of_each_event() -> None:
    families = text_string_to_metric_families(busy_metrics().render()[0].decode())
    assert [f.name for f in families if f.name.startswith(PREFIX) and not f.samples] == []


def test_http_requests_are_counted_by_route_method_and_status() -> None:
    m = Metrics()
    for status in (200, 200, 422):
        m.request_started()
        m.request_finished("/predict", "POST", status, 0.001)
    assert value(m, "lstm_predictor_http_requests_total", route="/predict", method="POST", status="200") == 2
    assert value(m, "lstm_predictor_http_requests_total", route="/predict", method="POST", status="422") == 1
    assert value(m, "lstm_predictor_http_requests_in_flight") == 0


def test_requests_in_flight_counts_started_but_unfinished_requests() -> None:
    m = Metrics()
    m.request_started()
    m.request_started()
    m.request_finished("/health", "GET", 200, 0.0001)
    assert value(m, "lstm_predictor_http_requests_in_flight") == 1


def test_histogram_buckets_are_cumulative_and_le_inclusive_with_sum_and_count() -> None:
    m = Metrics()
    observed = [0.00001, 0.0005, 0.0005, 0.0009, 0.02, 60.0]  # 0.0005 is a bound itself
    for seconds in observed:
        m.request_started()
        m.request_finished("/predict", "POST", 200, seconds)
    buckets = {
        float(dict(labels)["le"]): v
        for labels, v in samples(m, "lstm_predictor_http_request_duration_seconds_bucket").items()
    }
    assert sorted(buckets) == [*LATENCY_BUCKETS, float("inf")]
    for bound, count in buckets.items():
        assert count == sum(1 for s in observed if s <= bound), bound
    assert value(m, "lstm_predictor_http_request_duration_seconds_count", route="/predict") == len(observed)
    assert value(m, "lstm_predictor_http_request_duration_seconds_sum", route="/predict") == pytest.approx(sum(observed))


def test_latency_buckets_resolve_sub_millisecond_inference() -> None:
    assert LATENCY_BUCKETS[0] <= 0.00005
    assert sum(1 for b in LATENCY_BUCKETS if b < 0.001) >= 6
    assert LATENCY_BUCKETS[-1] >= 5


def test_loading_models_publishes_their_info_and_zeroed_series_for_every_kind() -> None:
    m = Metrics()
    m.models_loaded([bundle("PETR4.SA"), bundle("VALE3", symbol="VALE3.SA")], variants={"VALE3": "int8"})
    assert value(m, "lstm_predictor_models_loaded") == 2
    info = [dict(labels) for labels in samples(m, "lstm_predictor_model_info")]
    assert sorted(info, key=lambda i: i["model"]) == [
        {"model": "PETR4.SA", "version": "2026.01.02-1", "sha256": FP32_SHA, "normalisation": "window_first",
         "symbol": "PETR4.SA", "variant": "fp32"},
        {"model": "VALE3", "version": "2026.01.02-1", "sha256": INT8_SHA, "normalisation": "window_first",
         "symbol": "VALE3.SA", "variant": "int8"},
    ]
    predictions = samples(m, "lstm_predictor_predictions_total")
    assert predictions == {frozenset({"kind": k, "model": n}.items()): 0 for k in KINDS for n in ("PETR4.SA", "VALE3")}
    assert value(m, "lstm_predictor_inference_duration_seconds_count", model="VALE3") == 0


def test_a_reload_replaces_the_model_info_but_keeps_counting_for_dropped_models() -> None:
    m = Metrics()
    m.models_loaded([bundle("PETR4.SA", version="1")])
    m.prediction("manual", "PETR4.SA")
    m.models_loaded([bundle("VALE3.SA", version="2")])
    assert [dict(labels)["model"] for labels in samples(m, "lstm_predictor_model_info")] == ["VALE3.SA"]
    m.prediction("manual", "PETR4.SA")  # an answer in flight across the swap
    assert value(m, "lstm_predictor_predictions_total", kind="manual", model="PETR4.SA") == 2


def test_predictions_inference_and_queue_wait_are_recorded_per_model() -> None:
    m = Metrics()
    m.models_loaded([bundle("PETR4.SA")])
    m.prediction("forecast", "PETR4.SA", count=5)
    m.inference("PETR4.SA", 0.0005, batch_size=3)
    m.inference("PETR4.SA", 0.007, batch_size=32)
    m.queue_wait("PETR4.SA", 0.0002)
    assert value(m, "lstm_predictor_predictions_total", kind="forecast", model="PETR4.SA") == 5
    assert value(m, "lstm_predictor_inference_duration_seconds_sum", model="PETR4.SA") == pytest.approx(0.0075)
    assert value(m, "lstm_predictor_inference_batch_size_sum", model="PETR4.SA") == 35
    assert value(m, "lstm_predictor_inference_batch_size_bucket", model="PETR4.SA", le="4.0") == 1
    assert value(m, "lstm_predictor_queue_wait_seconds_count", model="PETR4.SA") == 1


def test_client_chosen_values_cannot_create_label_values() -> None:
    m = Metrics()
    m.models_loaded([bundle("PETR4.SA")])
    for i in range(50):
        m.request_started()
        m.request_finished("unmatched", f"BREW{i}", 405, 0.0001)
        m.prediction("manual", f"NOPE{i}.SA")
        m.inference(f"NOPE{i}.SA", 0.001, 1)
        m.queue_wait(f"NOPE{i}.SA", 0.001)
        m.market_data_age(f"NOPE{i}.SA", 1.0)
    assert set(samples(m, "lstm_predictor_http_requests_total")) == {
        frozenset({"route": "unmatched", "method": "other", "status": "405"}.items())
    }
    assert value(m, "lstm_predictor_predictions_total", kind="manual", model="other") == 50
    for name in ("lstm_predictor_inference_duration_seconds_count", "lstm_predictor_queue_wait_seconds_count"):
        assert {dict(labels)["model"] for labels in samples(m, name)} == {"PETR4.SA", "other"}
    assert samples(m, "lstm_predictor_market_data_age_seconds") == {}


def test_an_unknown_prediction_kind_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="manual"):
        Metrics().prediction("bulk", "PETR4.SA")


def test_reloads_are_counted_by_result_and_the_last_failure_is_visible_until_a_success() -> None:
    m = Metrics()
    assert value(m, "lstm_predictor_reloads_total", result="failure") == 0
    assert value(m, "lstm_predictor_last_reload_successful") == 1
    m.reload(ok=False)
    assert value(m, "lstm_predictor_reloads_total", result="failure") == 1
    assert value(m, "lstm_predictor_last_reload_successful") == 0
    m.reload(ok=True)
    assert value(m, "lstm_predictor_reloads_total", result="success") == 1
    assert value(m, "lstm_predictor_last_reload_successful") == 1


def test_market_data_fetches_are_labelled_by_source_kind_not_path() -> None:
    m = Metrics()
    m.market_fetch("csv:/srv/prices", 0.002, ok=True)
    m.market_fetch("yfinance", 1.5, ok=False)
    m.market_fetch("yfinance", 0.8, ok=True)
    assert value(m, "lstm_predictor_market_data_fetch_failures_total", source="csv") == 0
    assert value(m, "lstm_predictor_market_data_fetch_failures_total", source="yfinance") == 1
    assert value(m, "lstm_predictor_market_data_fetch_duration_seconds_count", source="yfinance") == 2
    assert value(m, "lstm_predictor_market_data_fetch_duration_seconds_sum", source="csv") == pytest.approx(0.002)


def test_cache_hits_and_misses_are_counted() -> None:
    m = Metrics()
    for hit in (True, True, False):
        m.market_cache(hit)
    assert value(m, "lstm_predictor_market_data_cache_hits_total") == 2
    assert value(m, "lstm_predictor_market_data_cache_misses_total") == 1


def test_market_data_age_keeps_growing_after_it_is_set_and_is_dropped_with_its_model() -> None:
    m = Metrics()
    m.models_loaded([bundle("PETR4.SA")])
    m.market_data_age("PETR4.SA", 120.0)
    first = value(m, "lstm_predictor_market_data_age_seconds", symbol="PETR4.SA")
    second = value(m, "lstm_predictor_market_data_age_seconds", symbol="PETR4.SA")
    assert 120.0 <= first <= second
    m.models_loaded([bundle("VALE3.SA")])
    assert samples(m, "lstm_predictor_market_data_age_seconds") == {}


def test_build_info_names_the_package_version() -> None:
    from lstm_predictor import __version__

    [labels] = samples(Metrics(), "lstm_predictor_build_info")
    assert dict(labels)["version"] == __version__


def test_route_label_is_the_route_template_or_unmatched() -> None:
    """A real aiohttp server labels requests the way the daemon's middleware does."""
    m = Metrics()

    @web.middleware
    async def count(request: web.Request, handler):  # type: ignore[no-untyped-def]
        m.request_started()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            m.request_finished(route_label(request), request.method, status, 0.001)

    async def ok(request: web.Request) -> web.Response:
        return web.json_response({})

    async def run() -> None:
        app = web.Application(middlewares=[count])
        app.router.add_post("/v2/models/{name}/infer", ok)
        async with TestClient(TestServer(app)) as client:
            for path in ("/v2/models/PETR4.SA/infer", "/v2/models/anything/infer"):
                assert (await client.post(path)).status == 200
            assert (await client.get("/etc/passwd")).status == 404
            assert (await client.get("/v2/models/x/infer")).status == 405

    asyncio.run(run())
    assert samples(m, "lstm_predictor_http_requests_total") == {
        frozenset({"route": "/v2/models/{name}/infer", "method": "POST", "status": "200"}.items()): 2,
        frozenset({"route": "unmatched", "method": "GET", "status": "404"}.items()): 1,
        frozenset({"route": "unmatched", "method": "GET", "status": "405"}.items()): 1,
    }


def test_promtool_finds_nothing_to_lint_in_a_busy_scrape(promtool: str) -> None:
    result = subprocess.run([promtool, "check", "metrics"], input=busy_metrics().render()[0], capture_output=True, check=False)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert result.stdout.decode() + result.stderr.decode() == ""


def test_in_process_readers_see_the_same_numbers_as_a_scrape() -> None:
    m = busy_metrics()

    def as_set(samples: list[Sample]) -> set[tuple[str, frozenset, float | None]]:
        # The data age keeps growing between two reads: compare its series, not its value.
        return {(s.name, frozenset(s.labels.items()), None if s.name.endswith("age_seconds") else s.value)
                for s in samples}

    scraped = as_set([s for s in scrape(m) if s.name.startswith(PREFIX)])
    collected = as_set([s for family in m.collect() for s in family.samples])
    assert scraped and collected == scraped


def test_label_values_are_escaped_in_the_exposition() -> None:
    m = Metrics()
    odd = 'a "quoted" \\ route\nwith a newline'
    m.request_started()
    m.request_finished(odd, "GET", 200, 0.001)
    assert value(m, "lstm_predictor_http_requests_total", route=odd, method="GET", status="200") == 1


def test_the_exposition_is_byte_for_byte_what_prometheus_client_would_write() -> None:
    m = busy_metrics()

    class Families:  # prometheus_client's own writer, fed the same families
        def collect(self):  # type: ignore[no-untyped-def]
            return m.collect()

    registry = CollectorRegistry()
    registry.register(Families())
    expected, body = generate_latest(registry).decode(), m.render()[0].decode()

    def steady(text: str) -> list[str]:  # the data age keeps growing between two reads
        return [line for line in text.splitlines() if not line.startswith("lstm_predictor_market_data_age_seconds{")]

    assert steady(body)[: len(steady(expected))] == steady(expected)


def test_a_batcher_thread_records_inference_while_the_loop_scrapes_without_losing_a_run() -> None:
    m = Metrics()
    m.models_loaded([bundle("PETR4.SA")])
    runs = 50_000

    def worker() -> None:  # the model's batcher thread: the single writer of its series
        for i in range(runs):
            m.inference("PETR4.SA", 0.0005, 1 + i % 4)
            m.inference("UNLOADED.SA", 0.0005, 1)  # creates the "other" series mid-scrape

    thread = threading.Thread(target=worker)
    thread.start()
    while thread.is_alive():
        scrape(m)
    thread.join()
    assert value(m, "lstm_predictor_inference_duration_seconds_count", model="PETR4.SA") == runs
    assert value(m, "lstm_predictor_inference_batch_size_sum", model="PETR4.SA") == runs // 4 * (1 + 2 + 3 + 4)
    assert value(m, "lstm_predictor_inference_duration_seconds_count", model="other") == runs
