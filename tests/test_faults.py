"""The daemon under faults: what a client, an operator and systemd see when something breaks.

Faults specified elsewhere, not repeated here:

* market data, unit level (tests/test_market_service.py): a failure with nothing cached is a 503
  with Retry-After; the last good closes are served marked stale; backoff per symbol, longer on
  repeated failures, source-wide on a rate limit; a fetch past the timeout counts as failed;
* market data, real daemon (tests/test_daemon_api.py): no price file is a 404, an unreadable
  file a 503, fewer closes than the look-back a 503 saying so; and
  (tests/test_market_service.py) a price file that breaks later is served stale;
* models (tests/test_daemon_lifecycle.py): a broken bundle at start exits 1; a new broken bundle
  on SIGHUP leaves the old set serving, /health degraded, the reload gauge at 0;
* SIGTERM (tests/test_daemon_lifecycle.py): a few requests mid-upload are answered; systemd's
  view of start, reload and stop is in tests/test_notify_daemon.py.

Specified here, each against the real daemon unless said otherwise: a CSV source that breaks
and mends; Yahoo Finance (faked at the network boundary) hanging or rate limiting; bundles
broken under a serving daemon, then SIGHUP; SIGTERM under load; every start-up failure.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import onnx
import pytest
from daemon_harness import RunningDaemon, free_port, launch, run_to_exit, write_prices
from lstm_predictor.daemon.bundle import MODEL_FILE, sha256_file, write_metadata
from lstm_predictor.daemon.errors import Unavailable
from lstm_predictor.daemon.market_data import PriceSeries
from lstm_predictor.daemon.market_data.service import MarketDataService
from lstm_predictor.daemon.metrics import Metrics
from lstm_predictor.daemon.trading_calendar import b3_today, previous_trading_day
from onnx import TensorProto, helper
from test_daemon_lifecycle import (
    PATIENT_WITH_BODIES,
    accepts_connections,
    begin_uploads,
    finish_uploads,
    reload_and_wait,
    wait_for,
)
from test_market_service import Clock, FakeSource, series
from tiny_bundle import INPUT, OUTPUT, make_tiny_bundle, tiny_graph

WINDOW = [round(20 + 0.1 * i, 2) for i in range(60)]
SYMBOL = "TINY3.SA"


def metric(daemon: RunningDaemon, sample: str) -> float:
    """The value of one sample line of /metrics (name with its labels, exactly as exposed), 0 if absent."""
    for line in daemon.get("/metrics").body.decode().splitlines():
        name, _, value = line.rpartition(" ")
        if name == sample:
            return float(value)
    return 0.0


def error_of(reply) -> dict:
    assert reply.headers["Content-Type"].startswith("application/json"), reply.body
    return reply.json()["error"]


# -- market data through the real daemon (a CSV directory source) ---------------------------------------


@pytest.fixture
def market(start_daemon, models_dir: Path, tmp_path: Path) -> tuple[RunningDaemon, Path]:
    """A daemon whose price file for TINY3.SA the test breaks and mends: closes up to the last
    B3 session (so fresh data is not stale for its age), a short TTL."""
    prices = tmp_path / "prices"
    prices.mkdir()
    daemon = start_daemon(models_dir, prices, args=["--market-data-ttl", "0.5", "--market-data-timeout", "5"])
    return daemon, prices


def write_good_prices(prices: Path) -> Path:
    return write_prices(prices, last=previous_trading_day(b3_today()))


def live(daemon: RunningDaemon, symbol: str = SYMBOL):
    return daemon.post("/predict/live", {"symbol": symbol})


PRICE_FAULTS: dict[str, Callable[[Path], object]] = {
    "garbage in the price file": lambda prices: (prices / f"{SYMBOL}.csv").write_bytes(b"\x00\xffnot,a,price\nfile"),
    "the price directory gone": shutil.rmtree,
}


@pytest.mark.parametrize("fault", list(PRICE_FAULTS))
def test_a_broken_csv_source_is_503_counted_as_a_failed_fetch_and_live_recovers_when_it_is_mended(
        fault: str, market) -> None:
    daemon, prices = market
    PRICE_FAULTS[fault](prices)
    failures = 'lstm_predictor_market_data_fetch_failures_total{source="csv"}'

    reply = live(daemon)
    assert reply.status == 503 and int(reply.headers["Retry-After"]) >= 1
    error = error_of(reply)
    assert error["status"] == 503 and error["code"] == "market_data_unavailable" and SYMBOL in error["message"]
    assert metric(daemon, failures) == 1

    write_good_prices(prices)  # the source is asked again once the backoff (Retry-After) is over
    recovered = wait_for(lambda: (r := live(daemon)).status == 200 and r, "live to recover", daemon)
    assert recovered.json()["data"]["stale"] is False
    assert metric(daemon, failures) == 1


def test_too_few_closes_is_503_until_the_ttl_lets_a_mended_file_in(market) -> None:
    daemon, prices = market
    write_prices(prices, last=previous_trading_day(b3_today()), sessions=10)
    reply = live(daemon)
    assert reply.status == 503 and error_of(reply)["code"] == "insufficient_market_data"

    write_good_prices(prices)
    recovered = wait_for(lambda: (r := live(daemon)).status == 200 and r, "live to recover", daemon)
    assert recovered.json()["data"]["stale"] is False


def test_a_named_pipe_in_place_of_a_price_file_is_a_broken_source_never_read(market) -> None:
    """Reading a FIFO would block until something writes to it: it is refused unopened, so no
    worker thread is left waiting on it."""
    daemon, prices = market
    os.mkfifo(prices / f"{SYMBOL}.csv")
    reply = live(daemon)
    assert reply.status == 503 and "not a regular file" in error_of(reply)["message"]
    assert daemon.stop() == 0


# -- market data through the real daemon: Yahoo Finance faked at the network boundary ----------------


FAKE_YAHOO = Path(__file__).parent / "fake_yahoo"
OTHER = "OTHER3.SA"
FAILED_YAHOO_FETCHES = 'lstm_predictor_market_data_fetch_failures_total{source="yfinance"}'


@pytest.fixture
def yahoo(start_daemon, models_dir: Path, tmp_path: Path) -> tuple[RunningDaemon, Callable[[str], None]]:
    """A daemon on the yfinance source (see tests/fake_yahoo/sitecustomize.py) serving TINY3.SA and
    OTHER3.SA, with a 1 s fetch timeout and a short TTL; and a switch for what Yahoo does next."""
    make_tiny_bundle(models_dir / OTHER, symbol=OTHER)
    control = tmp_path / "yahoo"
    for symbol in (SYMBOL, OTHER):
        write_prices(control, symbol=symbol, last=previous_trading_day(b3_today()))

    def yahoo_will(mode: str) -> None:
        (control / "mode").write_text(mode, encoding="utf-8")

    yahoo_will("ok")
    daemon = start_daemon(models_dir, args=["--market-data-timeout", "1", "--market-data-ttl", "0.5"],
                          env={"PYTHONPATH": os.pathsep.join(filter(None, [str(FAKE_YAHOO), os.environ.get("PYTHONPATH")])),
                               "FAKE_YAHOO_DIR": str(control)})
    return daemon, yahoo_will


def test_a_hung_yahoo_is_stale_data_or_503_within_the_timeout_and_never_holds_up_shutdown(yahoo) -> None:
    daemon, yahoo_will = yahoo
    fresh = live(daemon, SYMBOL).json()
    assert fresh["data"]["stale"] is False

    yahoo_will("hang")
    time.sleep(0.6)  # past the TTL
    stale = live(daemon, SYMBOL)
    assert stale.status == 200
    assert stale.json()["data"]["stale"] is True and "did not answer within 1 s" in stale.json()["data"]["stale_reason"]
    assert stale.json()["predicted_price"] == fresh["predicted_price"]
    never_fetched = live(daemon, OTHER)
    assert never_fetched.status == 503 and int(never_fetched.headers["Retry-After"]) >= 1
    error = error_of(never_fetched)
    assert error["code"] == "market_data_unavailable" and "did not answer within 1 s" in error["message"]
    assert metric(daemon, FAILED_YAHOO_FETCHES) == 2

    yahoo_will("ok")  # the two hung fetches stay hung; new ones go through once the backoff is over
    for symbol in (SYMBOL, OTHER):
        recovered = wait_for(lambda s=symbol: (r := live(daemon, s)).status == 200 and r, "recovery", daemon)
        assert recovered.json()["data"]["stale"] is False

    assert daemon.stop() == 0  # with two worker threads still blocked in Yahoo


def test_a_yahoo_rate_limit_serves_stale_data_and_503s_the_rest_without_asking_again(yahoo) -> None:
    daemon, yahoo_will = yahoo
    fresh = live(daemon, SYMBOL).json()

    yahoo_will("ratelimit")
    time.sleep(0.6)  # past the TTL
    stale = live(daemon, SYMBOL)
    assert stale.status == 200 and stale.json()["data"]["stale"] is True
    assert "rate limiting" in stale.json()["data"]["stale_reason"]
    assert stale.json()["predicted_price"] == fresh["predicted_price"]
    # A rate limit is the whole source's: another symbol waits out the same backoff.
    never_fetched = live(daemon, OTHER)
    assert never_fetched.status == 503 and 1 <= int(never_fetched.headers["Retry-After"]) <= 30
    assert "rate limiting" in error_of(never_fetched)["message"]
    assert metric(daemon, FAILED_YAHOO_FETCHES) == 1  # Yahoo was asked once, not twice


def test_hung_fetches_hold_their_threads_so_they_cannot_pile_up() -> None:
    """A fetch that never returns keeps its worker thread (it cannot be killed) and its slot: with
    every slot held, further fetches wait for one within their own timeout rather than start yet
    another thread that would hang too. A slot comes back when its fetch finally returns."""
    source, release = FakeSource(), threading.Event()

    def hangs_for_petr4(symbol: str) -> PriceSeries:
        if symbol == "PETR4.SA":
            release.wait(30)
        return series(symbol)

    source.answer = hangs_for_petr4

    async def scenario() -> None:
        service = MarketDataService(source, ttl=300, timeout=1, metrics=Metrics(), max_threads=1, clock=Clock())
        with pytest.raises(Unavailable, match="did not answer within 1 s"):
            await service.get("PETR4.SA")
        with pytest.raises(Unavailable, match="did not answer within 1 s"):
            await service.get("VALE3.SA")
        assert source.calls == 1  # VALE3.SA never got a thread
        release.set()  # PETR4.SA's fetch returns, and its slot serves the next fetch
        assert not (await service.get("ITUB4.SA")).stale

    asyncio.run(scenario())


# -- models while serving: SIGHUP with a broken bundle ---------------------------------------------------


def _truncate(bundle: Path) -> None:
    model = bundle / MODEL_FILE
    model.write_bytes(model.read_bytes()[:40])


def _rehash(bundle: Path) -> None:
    """Record the files' new sha256 in metadata.json, so that only loading them can tell."""
    write_metadata(bundle, json.loads((bundle / "metadata.json").read_text(encoding="utf-8")))


def _truncate_and_rehash(bundle: Path) -> None:
    _truncate(bundle)
    _rehash(bundle)


def _replace_graph(graph: onnx.ModelProto) -> Callable[[Path], None]:
    def replace(bundle: Path) -> None:
        onnx.save(graph, str(bundle / MODEL_FILE))
        _rehash(bundle)

    return replace


def _graph_with_a_false_output_shape() -> onnx.ModelProto:
    """Declares ratio [batch, 1] but answers [batch + 1, 0]: its declared shapes match the
    metadata, so only running it shows the lie."""
    i64 = TensorProto.INT64
    nodes = [
        helper.make_node("ReduceMean", [INPUT], ["mean"], axes=[1], keepdims=0),
        helper.make_node("Shape", [INPUT], ["shape"]),  # [batch, look_back, 1]
        helper.make_node("Constant", [], ["plus"], value=helper.make_tensor("plus", i64, [3], [1, 0, -1])),
        helper.make_node("Add", ["shape", "plus"], ["grown"]),  # [batch + 1, look_back, 0]
        helper.make_node("Constant", [], ["pick"], value=helper.make_tensor("pick", i64, [2], [0, 2])),
        helper.make_node("Gather", ["grown", "pick"], ["repeats"]),  # [batch + 1, 0]
        helper.make_node("Tile", ["mean", "repeats"], [OUTPUT]),
    ]
    graph = helper.make_graph(
        nodes, "false_output_shape",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["batch", 60, 1])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", 1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


BUNDLE_FAULTS = {
    "bundle folder deleted": (lambda bundle: shutil.rmtree(bundle), "holds no bundle"),
    "model.onnx truncated": (_truncate, "does not match its recorded sha256"),
    "model.onnx truncated, sha256 updated": (_truncate_and_rehash, "is not a loadable ONNX model"),
    "model.onnx of another look-back": (_replace_graph(tiny_graph(30)), "input shape [None, 30, 1] disagrees"),
    "model.onnx lying about its output": (_replace_graph(_graph_with_a_false_output_shape()),
                                          "expected one finite value per window"),
}


@pytest.mark.parametrize("fault", list(BUNDLE_FAULTS))
def test_a_served_bundle_broken_then_sighup_keeps_serving_the_old_model_until_a_fixed_one(
        fault: str, start_daemon, models_dir: Path) -> None:
    daemon = start_daemon(models_dir)
    bundle = models_dir / SYMBOL
    breaks, reason = BUNDLE_FAULTS[fault]
    breaks(bundle)

    health = reload_and_wait(daemon)

    assert daemon.process.poll() is None
    assert daemon.get("/health").status == 200
    assert health["status"] == "degraded" and health["last_reload"]["ok"] is False
    assert reason in health["last_reload"]["message"] and SYMBOL in health["last_reload"]["message"]
    assert health["models"][SYMBOL]["version"] == "1"
    answer = daemon.post("/predict", {"prices": WINDOW})
    assert answer.status == 200 and answer.json()["predicted_price"] == pytest.approx(np.mean(WINDOW), abs=1e-3)
    assert metric(daemon, "lstm_predictor_last_reload_successful") == 0
    assert metric(daemon, 'lstm_predictor_reloads_total{result="failure"}') == 1

    if bundle.exists():
        shutil.rmtree(bundle)
    make_tiny_bundle(bundle, version="2")
    health = reload_and_wait(daemon)

    assert health["status"] == "healthy" and health["last_reload"]["ok"] is True
    assert health["models"][SYMBOL]["version"] == "2"
    assert daemon.post("/predict", {"prices": WINDOW}).json()["model_version"] == "2"
    assert metric(daemon, "lstm_predictor_last_reload_successful") == 1
    assert daemon.stop() == 0


def test_a_new_bundle_folder_whose_name_is_not_utf8_fails_the_reload_and_systemd_hears_the_end_of_it(
        start_daemon, models_dir: Path, notify_listener) -> None:
    daemon = start_daemon(models_dir, env={"NOTIFY_SOCKET": notify_listener.address})
    notify_listener.wait_for(lambda m: m.get("READY") == "1")
    make_tiny_bundle(Path(os.fsdecode(bytes(models_dir) + b"/BAD\xff3.SA")), symbol="BAD3.SA")

    health = reload_and_wait(daemon)

    assert health["status"] == "degraded" and "is not valid UTF-8" in health["last_reload"]["message"]
    assert list(health["models"]) == [SYMBOL]
    after_reload = notify_listener.wait_for(lambda m: m.get("READY") == "1" and "reload failed" in m["STATUS"])
    assert any(m.get("RELOADING") == "1" for m in after_reload)
    assert daemon.post("/predict", {"prices": WINDOW}).status == 200


def test_a_sighup_while_the_models_load_at_start_is_a_reload_once_serving(tmp_path: Path, notify_listener) -> None:
    bundle = make_tiny_bundle(tmp_path / "models" / SYMBOL)
    # A large file the bundle records, so that checking its sha256 makes loading take a while.
    with open(bundle / "padding.bin", "wb") as padding:
        padding.truncate(128 << 20)  # sparse: no disk used
    metadata = json.loads((bundle / "metadata.json").read_text(encoding="utf-8"))
    metadata["files"]["padding.bin"] = {"sha256": sha256_file(bundle / "padding.bin")}
    write_metadata(bundle, metadata)
    daemon = launch(tmp_path / "models", env={"NOTIFY_SOCKET": notify_listener.address}, log_dir=tmp_path)
    try:
        notify_listener.wait_for(lambda m: "loading models" in m.get("STATUS", ""))

        daemon.signal(signal.SIGHUP)  # its default action would end the process

        daemon.wait_healthy()
        health = wait_for(lambda: (h := daemon.get("/health").json())["last_reload"] and h, "the reload", daemon)
        assert health["status"] == "healthy" and health["last_reload"]["ok"] is True
    finally:
        assert daemon.stop() == 0


def test_a_bundle_lying_about_its_output_is_refused_at_start(tmp_path: Path) -> None:
    bundle = make_tiny_bundle(tmp_path / "models" / SYMBOL)
    _replace_graph(_graph_with_a_false_output_shape())(bundle)
    result = run_to_exit(["--models", str(tmp_path / "models"), "--port", str(free_port())])
    assert result.returncode == 1 and "expected one finite value per window" in result.stderr


# -- SIGTERM under load -----------------------------------------------------------------------------------

FORECAST = json.dumps({"days": 30, "prices": WINDOW, "last_date": "2024-02-09"}).encode()
CONNECTION_REFUSED = (ConnectionRefusedError, ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected)


def test_sigterm_under_load_answers_every_request_received_and_refuses_new_connections(
        start_daemon, models_dir: Path) -> None:
    daemon = start_daemon(models_dir, args=PATIENT_WITH_BODIES)
    uploading = begin_uploads(daemon, "/predict/forecast", FORECAST, 32)  # 30-day forecasts, bodies arriving
    wait_for(lambda: daemon.get("/monitoring/stats").json()["requests"]["in_flight"] >= 33, "32 requests in flight",
             daemon)

    # Meanwhile, clients keep sending whole forecasts, before and across the SIGTERM: each is
    # answered in full, or never accepted (refused; or reset, when the kernel had queued the
    # connection but the daemon had not taken it yet), never answered with an error.
    outcomes: list[object] = []
    stop_sending = threading.Event()

    def keep_sending() -> None:
        while not stop_sending.is_set():
            try:
                reply = daemon.request("POST", "/predict/forecast", FORECAST, {"Content-Type": "application/json"})
                outcomes.append((reply.status, len(reply.json()["forecast"])))
            except CONNECTION_REFUSED:
                outcomes.append("refused")
                return

    senders = [threading.Thread(target=keep_sending) for _ in range(4)]
    for sender in senders:
        sender.start()
    time.sleep(0.3)
    daemon.signal(signal.SIGTERM)
    wait_for(lambda: not accepts_connections(daemon.port), "the listening socket to close", daemon)
    stop_sending.set()
    for sender in senders:
        sender.join(30)

    answers = finish_uploads(uploading, FORECAST)
    assert all(a.startswith(b"HTTP/1.1 200 OK") for a in answers), answers
    assert all(len(json.loads(a.partition(b"\r\n\r\n")[2])["forecast"]) == 30 for a in answers)
    answered = [o for o in outcomes if o != "refused"]
    assert answered and set(answered) == {(200, 30)}, outcomes
    assert daemon.process.wait(30) == 0, daemon.stderr


# -- crash at start: one line on stderr, the exit code says whose fault ---------------------------------
#
# Exit 2: the configuration is wrong (fix the flags, environment or config file); exit 1: the
# configuration is fine but the daemon cannot start with it (models, the port). The verdict is one
# line, "lstm-predictor serve: <what is wrong>", never a traceback. Log records (timestamped) may come
# before it, such as a warning that a bundle has no int8 variant; none of these faults logs any at
# the default level, so here stderr is exactly that line.


def _config_file(text: bytes) -> Callable[[Path, ExitStack], list[str]]:
    def setup(tmp: Path, stack: ExitStack) -> list[str]:
        (tmp / "config.toml").write_bytes(text)
        return ["--config", str(tmp / "config.toml")]

    return setup


def _busy_port(tmp: Path, stack: ExitStack) -> list[str]:
    busy = stack.enter_context(socket.socket())
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    return ["--port", str(busy.getsockname()[1])]


START_FAULTS = {
    "bad flag value": (lambda tmp, stack: ["--max-batch-size", "zero"], {}, 2, "flag --max-batch-size: expected an integer"),
    "bad environment value": (lambda tmp, stack: [], {"LSTM_PREDICTOR_MAX_QUEUE_SIZE": "-1"}, 2,
                              "environment LSTM_PREDICTOR_MAX_QUEUE_SIZE: must be at least 1"),
    "port out of range": (lambda tmp, stack: ["--port", "99999"], {}, 2, "must be at most 65535"),
    "bad value in the config file": (_config_file(b'drain_timeout = "soon"\n'), {}, 2, "drain_timeout"),
    "unknown config key": (_config_file(b"max_batch = 8\n"), {}, 2, "unknown key(s) max_batch"),
    "config file not TOML": (_config_file(b"port = [\n"), {}, 2, "not valid TOML"),
    "config file not UTF-8": (_config_file(b"\xff\xfe = 1\n"), {}, 2, "not valid TOML"),
    "config file missing": (lambda tmp, stack: ["--config", str(tmp / "absent.toml")], {}, 2, "cannot be read"),
    "config file is a directory": (lambda tmp, stack: ["--config", str(tmp)], {}, 2, "cannot be read"),
    "models directory missing": (lambda tmp, stack: ["--models", str(tmp / "absent")], {}, 1, "does not exist"),
    "models directory is a file": (lambda tmp, stack: ["--models", os.devnull], {}, 1, "is not a directory"),
    "models directory empty": (lambda tmp, stack: ["--models", str(tmp)], {}, 1, "holds no bundle"),
    "port already taken": (_busy_port, {}, 1, "cannot listen on 127.0.0.1:"),
}


@pytest.mark.parametrize("fault", list(START_FAULTS))
def test_a_start_up_fault_exits_non_zero_with_one_clear_line(fault: str, models_dir: Path, tmp_path: Path) -> None:
    setup, env, code, says = START_FAULTS[fault]
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with ExitStack() as stack:
        result = run_to_exit(["--models", str(models_dir), "--port", str(free_port()), *setup(scratch, stack)], env=env)
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lstm-predictor serve: ") and says in lines[0], result.stderr

