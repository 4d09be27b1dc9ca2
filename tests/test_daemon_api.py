"""The HTTP API, end to end: the real daemon in a subprocess, real bundles, real CSV prices.

One daemon serves the whole module. Its models are tiny real ONNX bundles
(see tiny_bundle.py) whose prediction is the mean of the window, so every
expected number is computed here by hand:

* TINY3.SA   prices in TINY3.SA.csv, 120 B3 sessions ending Friday 2024-02-09,
             the session before Carnival (Monday 12 and Tuesday 13 Feb are closed);
* NOCSV3.SA  no price file: live predictions are 404;
* BROKEN3.SA a price file the source cannot read: live predictions are 503;
* SHORT3.SA  a price file with fewer closes than the model's look_back: 503.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from daemon_harness import RunningDaemon, launch, write_prices
from tiny_bundle import make_tiny_bundle

MAX_BODY = 4096
LOOK_BACK = 60


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDaemon]:
    root = tmp_path_factory.mktemp("api")
    for symbol in ("TINY3.SA", "NOCSV3.SA", "BROKEN3.SA", "SHORT3.SA"):
        make_tiny_bundle(root / "models" / symbol, symbol=symbol)
    write_prices(root / "prices")
    write_prices(root / "prices", symbol="SHORT3.SA", sessions=10)
    (root / "prices" / "BROKEN3.SA.csv").write_text("Date,Open\n2024-02-09,1.0\n", encoding="utf-8")
    running = launch(root / "models", root / "prices", ["--max-body-bytes", str(MAX_BODY)], log_dir=root)
    running.wait_healthy()
    yield running
    assert running.stop() == 0, running.stderr


def csv_closes(daemon: RunningDaemon) -> np.ndarray:
    path = Path(daemon.stderr_path).parent / "prices" / "TINY3.SA.csv"
    return np.array([float(line.split(",")[1]) for line in path.read_text().splitlines()[1:]])


def window(start: float = 20.0) -> list[float]:
    return [round(start + 0.1 * i, 2) for i in range(LOOK_BACK)]


def error_of(reply) -> dict:
    body = reply.json()
    assert set(body) == {"error"}, body
    assert body["error"]["status"] == reply.status
    return body["error"]


# -- index, health, monitoring ------------------------------------------------------------------


def test_index_names_the_service_its_models_and_links(daemon: RunningDaemon) -> None:
    body = daemon.get("/").json()
    assert body["service"] == "lstm-predictor"
    assert body["models"] == ["BROKEN3.SA", "NOCSV3.SA", "SHORT3.SA", "TINY3.SA"]
    assert body["default_model"] == "BROKEN3.SA"  # the first by name unless configured
    assert body["links"]["predict"] == "/predict" and body["links"]["metrics"] == "/metrics"


def test_health_is_200_healthy_with_each_model(daemon: RunningDaemon) -> None:
    reply = daemon.get("/health")
    assert reply.status == 200
    body = reply.json()
    assert body["status"] == "healthy" and body["model_loaded"] is True
    tiny = body["models"]["TINY3.SA"]
    assert tiny["loaded"] is True and tiny["look_back"] == LOOK_BACK and tiny["variant"] == "fp32"
    assert tiny["normalisation"] == "window_last" and tiny["version"] == "1"


def test_monitoring_stats_count_requests_and_predictions(daemon: RunningDaemon) -> None:
    before = daemon.get("/monitoring/stats").json()
    assert daemon.post("/predict", {"symbol": "TINY3.SA", "prices": window()}).status == 200
    after = daemon.get("/monitoring/stats").json()
    assert after["predictions"]["manual"] == before["predictions"]["manual"] + 1
    assert after["requests"]["total"] >= before["requests"]["total"] + 2
    assert after["process"]["memory_rss_bytes"] > 0 and after["process"]["pid"] == daemon.process.pid
    assert after["uptime_seconds"] >= before["uptime_seconds"]


def test_model_info_reports_the_bundle_metadata(daemon: RunningDaemon) -> None:
    body = daemon.get("/monitoring/model/info?symbol=TINY3.SA").json()
    assert body["model_name"] == "TINY3.SA" and body["look_back"] == LOOK_BACK
    assert body["normalisation"] == "window_last"
    assert "model.onnx" in body["files"] and len(body["files"]["model.onnx"]["sha256"]) == 64
    assert body["served_models"] == ["BROKEN3.SA", "NOCSV3.SA", "SHORT3.SA", "TINY3.SA"]
    assert daemon.get("/monitoring/model/info?symbol=NOPE").status == 404


def test_metrics_are_prometheus_text_labelled_by_route_template(daemon: RunningDaemon) -> None:
    daemon.post("/predict", {"symbol": "TINY3.SA", "prices": window()})
    daemon.get("/no/such/path")
    reply = daemon.get("/metrics")
    assert reply.status == 200 and reply.headers["Content-Type"].startswith("text/plain")
    text = reply.body.decode()
    assert 'lstm_predictor_http_requests_total{method="POST",route="/predict",status="200"}' in text
    assert 'route="unmatched"' in text and "/no/such/path" not in text
    assert 'lstm_predictor_predictions_total{kind="manual",model="TINY3.SA"}' in text


# -- POST /predict -------------------------------------------------------------------------------


def test_predict_answers_every_field_of_the_original_service(daemon: RunningDaemon) -> None:
    prices = window()
    reply = daemon.post("/predict", {"symbol": "TINY3.SA", "prices": prices})
    assert reply.status == 200
    body = reply.json()
    mean, last = float(np.mean(prices)), prices[-1]
    assert body["symbol"] == "TINY3.SA" and body["model_name"] == "TINY3.SA" and body["model_version"] == "1"
    assert body["predicted_price"] == pytest.approx(mean, abs=2e-4)
    assert body["predicted_ratio"] == pytest.approx(mean / last, abs=2e-6)
    assert body["reference_price"] == last  # window_last divides by the last close
    assert body["last_known_price"] == last
    assert body["expected_change_pct"] == pytest.approx((mean / last - 1) * 100, abs=1e-3)
    assert body["prediction_for_date"] is None and body["last_data_date"] is None
    assert body["inference_time_ms"] > 0
    assert dt.datetime.fromisoformat(body["timestamp"].replace("Z", "+00:00")).tzinfo is not None


def test_predict_with_last_date_is_dated_to_the_next_b3_session(daemon: RunningDaemon) -> None:
    body = daemon.post("/predict", {"symbol": "tiny3.sa", "prices": window(), "last_date": "2024-02-09"}).json()
    assert body["last_data_date"] == "2024-02-09"
    assert body["prediction_for_date"] == "2024-02-14"  # Carnival Monday and Tuesday are closed


def test_predict_without_symbol_uses_the_default_model(daemon: RunningDaemon) -> None:
    assert daemon.post("/predict", {"prices": window()}).json()["model_name"] == "BROKEN3.SA"


def test_malformed_json_is_400(daemon: RunningDaemon) -> None:
    reply = daemon.request("POST", "/predict", b'{"prices": [1, 2', {"Content-Type": "application/json"})
    assert reply.status == 400
    assert error_of(reply)["code"] == "malformed_request"


@pytest.mark.parametrize(
    ("prices", "says"),
    [
        (window()[:-1], "expected exactly 60 prices"),
        (window()[:30] + [0.0] + window()[31:], "prices[30] is 0.0: every price must be greater than 0"),
        (window()[:5] + [-3.5] + window()[6:], "prices[5] is -3.5"),
        (window()[:7] + ["7.1"] + window()[8:], "$.prices[7]"),
        (window()[:2] + [None] + window()[3:], "$.prices[2]"),
        (window()[:9] + [True] + window()[10:], "$.prices[9]"),
    ],
)
def test_invalid_prices_are_422_naming_the_element(daemon: RunningDaemon, prices: list, says: str) -> None:
    reply = daemon.post("/predict", {"symbol": "TINY3.SA", "prices": prices})
    assert reply.status == 422
    assert says in error_of(reply)["message"]


def test_an_infinite_price_is_422(daemon: RunningDaemon) -> None:
    body = json.dumps({"symbol": "TINY3.SA", "prices": window()}).replace("20.0,", "1e999,", 1)
    reply = daemon.request("POST", "/predict", body.encode())
    assert reply.status == 422 and "$.prices[0]" in error_of(reply)["message"]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_literals_are_not_json_and_400(daemon: RunningDaemon, literal: str) -> None:
    body = json.dumps({"symbol": "TINY3.SA", "prices": window()}).replace("20.0,", f"{literal},", 1)
    reply = daemon.request("POST", "/predict", body.encode(), {"Content-Type": "application/json"})
    assert reply.status == 400 and "not valid JSON" in error_of(reply)["message"]


@pytest.mark.parametrize(
    ("path", "body", "status", "says"),
    [
        ("/predict/forecast", '{"symbol": "TINY3.SA", "days": 1e400}', 422, "$.days"),
        ("/predict/forecast", '{"symbol": "TINY3.SA", "days": 1' + "0" * 400 + "}", 422, "$.days"),
        ("/v2/models/TINY3.SA/infer",  # the protocol answers every bad request 400
         '{"inputs": [{"name": "prices", "shape": [1, 60, 1], "datatype": "FP32", "data": [1e400'
         + ", 1.0" * 59 + "]}]}", 400, "$.inputs[0].data[0]"),
    ],
)
def test_numbers_beyond_any_float_or_integer_are_refused_naming_the_field(daemon: RunningDaemon, path: str, body: str,
                                                                          status: int, says: str) -> None:
    reply = daemon.request("POST", path, body.encode(), {"Content-Type": "application/json"})
    assert reply.status == status
    message = reply.json()["error"]
    assert says in (message if isinstance(message, str) else error_of(reply)["message"])


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "text/plain", "application/xml"])
@pytest.mark.parametrize("path", ["/predict", "/v2/models/TINY3.SA/infer"])
def test_a_body_of_another_media_type_is_400_saying_json_is_expected(daemon: RunningDaemon, path: str,
                                                                      content_type: str) -> None:
    # The media type is not checked (curl -d sends form-encoded by default): the body is.
    body = {"application/xml": b"<prices>1</prices>"}.get(content_type, b"symbol=TINY3.SA&prices=1")
    reply = daemon.request("POST", path, body, {"Content-Type": content_type})
    assert reply.status == 400 and reply.headers["Content-Type"].startswith("application/json")
    message = reply.json()["error"]
    assert "not valid JSON" in (message if isinstance(message, str) else message["message"])


def test_missing_prices_and_a_bad_date_are_422(daemon: RunningDaemon) -> None:
    assert daemon.post("/predict", {"symbol": "TINY3.SA"}).status == 422
    reply = daemon.post("/predict", {"symbol": "TINY3.SA", "prices": window(), "last_date": "9 Feb"})
    assert reply.status == 422 and "last_date" in error_of(reply)["message"]


@pytest.mark.parametrize("path", ["/predict", "/v2/models/TINY3.SA/infer"])
def test_a_body_that_cannot_be_decompressed_is_400(daemon: RunningDaemon, path: str) -> None:
    reply = daemon.request("POST", path, b"\x1f\x8b not gzip at all",
                           {"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert reply.status == 400
    message = reply.json()["error"]
    message = message if isinstance(message, str) else message["message"]
    assert "cannot be read" in message and "gzip" in message


def test_a_body_nested_deeper_than_the_decoder_goes_is_400(daemon: RunningDaemon) -> None:
    deep = b"[" * 1500 + b"]" * 1500  # within MAX_BODY
    reply = daemon.request("POST", "/predict", b'{"extra": ' + deep + b', "prices": [1.0]}',
                           {"Content-Type": "application/json"})
    assert reply.status == 400
    assert "nested too deeply" in error_of(reply)["message"]


@pytest.mark.parametrize("path", ["/predict", "/predict/forecast"])
def test_a_last_date_too_late_to_date_a_prediction_is_422(daemon: RunningDaemon, path: str) -> None:
    # The next trading day after 31 Dec 9999 is beyond any date Python can hold.
    reply = daemon.post(path, {"symbol": "TINY3.SA", "prices": window(), "last_date": "9999-12-31"})
    assert reply.status == 422
    error = error_of(reply)
    assert error["code"] == "invalid_input" and "last_date" in error["message"]


def test_unknown_symbol_is_404_listing_the_served_ones(daemon: RunningDaemon) -> None:
    reply = daemon.post("/predict", {"symbol": "VALE3.SA", "prices": window()})
    assert reply.status == 404
    error = error_of(reply)
    assert error["code"] == "unknown_model"
    assert error["details"]["served"] == ["BROKEN3.SA", "NOCSV3.SA", "SHORT3.SA", "TINY3.SA"]
    assert "TINY3.SA" in error["message"]


def test_a_body_over_the_limit_is_413_json(daemon: RunningDaemon) -> None:
    reply = daemon.post("/predict", {"symbol": "TINY3.SA", "prices": window(), "pad": "x" * MAX_BODY})
    assert reply.status == 413
    assert reply.headers["Content-Type"].startswith("application/json")
    assert str(MAX_BODY) in error_of(reply)["message"]


def test_unknown_paths_and_methods_answer_json(daemon: RunningDaemon) -> None:
    assert error_of(daemon.get("/nope"))["code"] == "no_such_endpoint"
    reply = daemon.request("DELETE", "/predict")
    assert reply.status == 405 and reply.headers["Allow"] == "POST"
    assert error_of(reply)["code"] == "method_not_allowed"


def test_v2_errors_use_the_open_inference_protocol_shape(daemon: RunningDaemon) -> None:
    reply = daemon.get("/v2/models/NOPE")
    assert reply.status == 404
    assert isinstance(reply.json()["error"], str)


# -- POST /predict/live ---------------------------------------------------------------------------


def test_live_predicts_the_next_b3_session_from_the_csv_closes(daemon: RunningDaemon) -> None:
    reply = daemon.post("/predict/live", {"symbol": "TINY3.SA"})
    assert reply.status == 200
    body = reply.json()
    closes = csv_closes(daemon)[-LOOK_BACK:]
    assert body["predicted_price"] == pytest.approx(float(np.mean(closes)), abs=2e-4)
    assert body["last_known_price"] == closes[-1]
    assert body["last_data_date"] == "2024-02-09"
    assert body["prediction_for_date"] == "2024-02-14"
    data = body["data"]
    assert data["source"].startswith("csv:") and data["source"].endswith("TINY3.SA.csv")
    assert data["last_date"] == "2024-02-09" and data["age_days"] > 365
    # Years old: B3 has traded since, and the response says so.
    assert data["stale"] is True and "2024-02-09" in data["stale_reason"]


def test_live_for_a_symbol_without_prices_is_404(daemon: RunningDaemon) -> None:
    reply = daemon.post("/predict/live", {"symbol": "NOCSV3.SA"})
    assert reply.status == 404
    assert error_of(reply)["code"] == "unknown_market_symbol"


def test_live_when_the_source_fails_with_nothing_cached_is_503_with_retry_after(daemon: RunningDaemon) -> None:
    reply = daemon.post("/predict/live", {"symbol": "BROKEN3.SA"})
    assert reply.status == 503
    assert int(reply.headers["Retry-After"]) >= 1
    error = error_of(reply)
    assert error["code"] == "market_data_unavailable" and "BROKEN3.SA" in error["message"]


def test_live_with_fewer_closes_than_the_look_back_is_503_saying_so(daemon: RunningDaemon) -> None:
    reply = daemon.post("/predict/live", {"symbol": "SHORT3.SA"})
    assert reply.status == 503
    error = error_of(reply)
    assert error["code"] == "insufficient_market_data" and "only 10 closes" in error["message"]


# -- POST /predict/forecast -----------------------------------------------------------------------


def recursive_means(prices: list[float] | np.ndarray, days: int) -> list[float]:
    window_ = [float(p) for p in prices]
    out = []
    for _ in range(days):
        out.append(float(np.mean(window_)))
        window_ = window_[1:] + [out[-1]]
    return out


def test_forecast_from_market_data_skips_carnival_and_feeds_back_full_precision(daemon: RunningDaemon) -> None:
    reply = daemon.post("/predict/forecast", {"symbol": "TINY3.SA", "days": 5})
    assert reply.status == 200
    body = reply.json()
    assert [d["date"] for d in body["forecast"]] == ["2024-02-14", "2024-02-15", "2024-02-16", "2024-02-19", "2024-02-20"]
    assert [d["day"] for d in body["forecast"]] == [1, 2, 3, 4, 5]
    closes = csv_closes(daemon)[-LOOK_BACK:]
    expected = recursive_means(closes, 5)
    assert [d["predicted_price"] for d in body["forecast"]] == pytest.approx(expected, abs=2e-4)
    base = float(closes[-1])
    assert body["last_known_price"] == base and body["base_date"] == "2024-02-09"
    previous = [base] + expected[:-1]
    for day, price, prev in zip(body["forecast"], expected, previous):
        assert day["change_pct"] == pytest.approx((price / base - 1) * 100, abs=1e-3)
        assert day["change_from_previous_pct"] == pytest.approx((price / prev - 1) * 100, abs=1e-3)
    assert body["data"]["source"].endswith("TINY3.SA.csv")


def test_forecast_from_given_prices_skips_the_year_end_closures(daemon: RunningDaemon) -> None:
    prices = window(30.0)
    body = daemon.post("/predict/forecast", {"symbol": "TINY3.SA", "days": 5, "prices": prices,
                                             "last_date": "2024-12-23"}).json()
    # 24 Dec (Christmas Eve), 25 Dec, 31 Dec (last business day) and 1 Jan are closed on B3.
    assert [d["date"] for d in body["forecast"]] == ["2024-12-26", "2024-12-27", "2024-12-30", "2025-01-02", "2025-01-03"]
    assert [d["predicted_price"] for d in body["forecast"]] == pytest.approx(recursive_means(prices, 5), abs=2e-4)
    assert body["data"] is None and body["last_data_date"] == "2024-12-23"


def test_forecast_of_30_days_feeds_back_unrounded_predictions(daemon: RunningDaemon) -> None:
    # Prices with more decimals than the response shows: rounding before feeding back would drift.
    prices = [30 + ((i * 7919) % 97) / 997 for i in range(LOOK_BACK)]
    body = daemon.post("/predict/forecast", {"symbol": "TINY3.SA", "days": 30, "prices": prices,
                                             "last_date": "2024-02-09"}).json()
    assert len(body["forecast"]) == 30
    assert [d["predicted_price"] for d in body["forecast"]] == pytest.approx(recursive_means(prices, 30), abs=2e-4)


@pytest.mark.parametrize("days", [0, 31, "5"])
def test_forecast_days_outside_1_to_30_are_422(daemon: RunningDaemon, days: object) -> None:
    reply = daemon.post("/predict/forecast", {"symbol": "TINY3.SA", "days": days})
    assert reply.status == 422 and "$.days" in error_of(reply)["message"]


def test_forecast_with_bad_prices_is_422(daemon: RunningDaemon) -> None:
    reply = daemon.post("/predict/forecast", {"symbol": "TINY3.SA", "days": 3, "prices": [1.0, 2.0]})
    assert reply.status == 422 and error_of(reply)["code"] == "invalid_prices"
