"""``lstm-predictor bench`` against a real daemon on a tiny bundle, with very short runs.

Only the presence and sanity of the figures are specified (every route ran,
without errors, at every concurrency asked for); their values are machine
figures and never asserted.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
from pathlib import Path

import aiohttp

import pytest
from click.testing import CliRunner
from lstm_predictor.daemon.bench import process, scenarios, wrk
from lstm_predictor.daemon.bench.server_metrics import scrape
from tiny_bundle import make_tiny_bundle

from lstm_predictor.cli import main

ROUTES = ("POST /predict", "POST /predict/forecast", "POST /v2/models/{name}/infer")


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    models = tmp_path_factory.mktemp("models")
    make_tiny_bundle(models / "TINY3.SA")
    return models


def bench(*args: str) -> tuple[str, dict]:
    """Run the command in-process; return its printed report and its --json figures."""
    out = Path(args[args.index("--json") + 1])
    result = CliRunner().invoke(main, ["bench", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output, json.loads(out.read_text())


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(secrets.token_hex(32) + "\n", encoding="ascii")
    path.chmod(0o600)
    return path


def assert_complete(report: str, figures: dict, connections: tuple[int, ...], generator: str) -> None:
    for route in ROUTES:
        assert route in report
    for label in ("req/s", "p50 ms", "p90 ms", "p99 ms", "errors", "daemon resident memory", "reproduce: lstm-predictor bench"):
        assert label in report
    runs = figures["runs"]
    assert sorted((r["scenario"], r["connections"]) for r in runs) == sorted(
        (s, c) for s in ("predict", "forecast", "v2") for c in connections
    )
    for run in runs:
        assert run["generator"] == generator
        assert run["requests"] > 0 and run["errors"] == 0, run
        assert 0 < run["p50"] <= run["p90"] <= run["p99"], run
        assert run["server_mean_seconds"] is not None and run["server_mean_seconds"] > 0, run
    assert figures["rss_after_bytes"] > 0
    assert figures["command"].startswith("lstm-predictor bench ")
    assert f"--generator {generator}" in figures["command"]


def test_bench_starts_a_daemon_times_it_to_ready_and_measures_every_route(models_dir: Path, tmp_path: Path) -> None:
    if not wrk.available():
        pytest.skip("wrk is not installed (apt-get install wrk)")
    report, figures = bench(
        "--start", "--models", str(models_dir), "--duration", "1", "--connections", "1,4",
        "--generator", "wrk", "--json", str(tmp_path / "figures.json"),
    )  # fmt: skip
    assert_complete(report, figures, (1, 4), "wrk")
    assert "start to ready:" in report
    assert figures["ready_seconds"] > 0


def test_bench_falls_back_to_its_own_load_generator_against_a_running_daemon(models_dir: Path, tmp_path: Path) -> None:
    port = process.free_port()
    daemon = process.start(models_dir, port)
    try:
        report, figures = bench(
            "--url", f"http://127.0.0.1:{port}", "--duration", "1", "--connections", "1,3",
            "--generator", "aiohttp", "--json", str(tmp_path / "figures.json"),
        )  # fmt: skip
    finally:
        daemon.stop()
    assert_complete(report, figures, (1, 3), "aiohttp")
    assert f"pid {daemon.pid}" in report  # found by its listening port
    assert figures["ready_seconds"] is None  # not started by the bench: nothing to time


@pytest.mark.parametrize("given", ["flag", "environment"])
def test_bench_sends_the_token_of_a_protected_daemon_on_every_request(
    start_daemon, models_dir: Path, token_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str
) -> None:  # fmt: skip
    # --metrics-auth: the /metrics scrapes behind the server figures need the token too.
    daemon = start_daemon(models_dir, args=("--token-file", str(token_file), "--metrics-auth"))
    token = token_file.read_text().strip()
    if given == "flag":
        how: tuple[str, ...] = ("--token-file", str(token_file))
    else:  # the daemon's own variable
        how = ()
        monkeypatch.setenv("LSTM_PREDICTOR_TOKEN_FILE", str(token_file))
    report, figures = bench(
        "--url", f"http://127.0.0.1:{daemon.port}", *how, "--duration", "1",
        "--connections", "2", "--generator", "aiohttp", "--json", str(tmp_path / "figures.json"),
    )  # fmt: skip
    assert_complete(report, figures, (2,), "aiohttp")  # no errors, and the daemon's own figures came
    assert f"--token-file {token_file}" in figures["command"]
    assert token not in report and token not in (tmp_path / "figures.json").read_text()


def test_bench_starts_a_protected_daemon_with_its_token_file_and_drives_wrk_with_the_token(
    models_dir: Path, token_file: Path, tmp_path: Path
) -> None:  # fmt: skip
    if not wrk.available():
        pytest.skip("wrk is not installed (apt-get install wrk)")
    token = token_file.read_text().strip()
    report, figures = bench(
        "--start", "--models", str(models_dir), "--token-file", str(token_file), "--scenario", "predict",
        "--duration", "1", "--connections", "2", "--generator", "wrk", "--json", str(tmp_path / "figures.json"),
    )  # fmt: skip
    assert [(run["scenario"], run["errors"]) for run in figures["runs"]] == [("predict", 0)]
    assert figures["runs"][0]["requests"] > 0
    assert f"--token-file {token_file}" in report  # given to the daemon it started, and in the reproduce line
    assert token not in report and token not in (tmp_path / "figures.json").read_text()


def test_bench_without_the_token_refuses_up_front_saying_what_to_give(
    start_daemon, models_dir: Path, token_file: Path
) -> None:  # fmt: skip
    daemon = start_daemon(models_dir, args=("--token-file", str(token_file)))
    result = CliRunner().invoke(main, ["bench", "--url", f"http://127.0.0.1:{daemon.port}", "--duration", "1",
                                       "--generator", "aiohttp"])  # fmt: skip
    assert result.exit_code == 1
    assert "answered 401" in result.output and "give --token-file FILE" in result.output


def test_bench_refuses_a_token_file_the_daemon_would_refuse(tmp_path: Path) -> None:
    short = tmp_path / "token"
    short.write_text("too-short\n", encoding="ascii")
    result = CliRunner().invoke(main, ["bench", "--url", "http://127.0.0.1:9", "--token-file", str(short)])
    assert result.exit_code == 2  # a usage error, before any request
    assert f"--token-file: the token file {short} must hold one token" in result.output
    assert "too-short" not in result.output


def test_the_wrk_script_quotes_the_token_so_no_token_can_end_the_lua_string_early() -> None:
    predict = scenarios.build("predict", scenarios.Target("TINY3.SA", 5, "input", "fp32"), scenarios.windows(2, 5))
    token = "abcdefgh]=]ijklmnop"  # printable ASCII, as the daemon allows: "]=]" would close a level-1 long string
    assert "wrk.headers[ [=[Authorization]=] ] = [==[Bearer abcdefgh]=]ijklmnop]==]\n" in wrk.script(predict, token)
    assert "Authorization" not in wrk.script(predict)


def test_bench_refuses_an_ambiguous_target() -> None:
    result = CliRunner().invoke(main, ["bench", "--url", "http://127.0.0.1:9", "--start"])
    assert result.exit_code != 0
    assert "either --url" in result.output


def test_bench_reports_why_the_daemon_it_started_never_became_ready(tmp_path: Path) -> None:
    (tmp_path / "BROKEN.SA").mkdir()
    (tmp_path / "BROKEN.SA" / "metadata.json").write_text("{}")
    result = CliRunner().invoke(main, ["bench", "--start", "--models", str(tmp_path), "--duration", "1"])
    assert result.exit_code != 0
    assert "before it was ready" in result.output
    assert "model.onnx is missing" in result.output  # the daemon's own words


@pytest.mark.slow
def test_bench_compares_with_the_original_keras_model(models_dir: Path, seed_keras_file: Path, tmp_path: Path) -> None:
    pytest.importorskip("keras")
    report, figures = bench(
        "--start", "--models", str(models_dir), "--scenario", "predict", "--scenario", "forecast",
        "--duration", "1", "--connections", "1", "--generator", "aiohttp", "--baseline", "keras",
        "--keras-model", str(seed_keras_file), "--keras-requests", "5", "--json", str(tmp_path / "figures.json"),
    )  # fmt: skip
    keras = figures["keras"]
    assert keras["requests"] == 5 and keras["p50"] > 0 and keras["rss_bytes"] > 0 and keras["ready_seconds"] > 0
    assert "daemon advantage" in report
    for label in ("/predict p50, one client", "30-day forecast p50", "resident memory", "start to ready"):
        assert label in report
    assert "--baseline keras" in figures["command"]


def test_a_metrics_scrape_that_times_out_counts_as_unavailable() -> None:
    async def scrape_silent_server(port: int) -> dict:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.3)) as session:
            return await scrape(session, f"http://127.0.0.1:{port}")

    with socket.socket() as silent:  # accepts connections (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        assert asyncio.run(scrape_silent_server(silent.getsockname()[1])) == {}
