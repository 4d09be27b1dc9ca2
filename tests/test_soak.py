"""``lstm-predictor bench --soak``: every route at once on many connections for a set time,
the daemon's resident memory read every second, and a verdict.

The verdict's rule is specified on made-up readings; the soak itself runs for a
minute against a real daemon serving the tiny bundle with CSV market data, and
must end with no failed request and less than 10 % memory growth after its
warm-up. Latencies and throughput are machine figures and never asserted.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import psutil
import pytest
from click.testing import CliRunner
from lstm_predictor.daemon.bench import scenarios, soak
from lstm_predictor.daemon.bench.server_metrics import resident_bytes

from lstm_predictor.cli import main

MB = 1024 * 1024


# -- the verdict, on made-up readings -------------------------------------------------------------


def test_the_warm_up_is_the_first_tenth_of_the_run_but_never_more_than_ten_seconds() -> None:
    assert soak.warmup_seconds(60) == 6
    assert soak.warmup_seconds(100) == 10
    assert soak.warmup_seconds(600) == 10


def test_growth_is_measured_from_the_first_reading_after_the_warm_up_to_the_last() -> None:
    readings = [(0.0, 50 * MB), (1.0, 90 * MB), (2.0, 100 * MB), (3.0, 120 * MB), (4.0, 105 * MB)]
    mem = soak.memory(readings, warmup=1.5)
    assert mem is not None
    assert (mem.warm, mem.end, mem.peak, mem.samples) == (100 * MB, 105 * MB, 120 * MB, 5)
    assert mem.growth_pct == pytest.approx(5.0)  # the climb during the warm-up and the peak do not count


def test_unreadable_readings_are_skipped_and_none_after_the_warm_up_means_no_figures() -> None:
    mem = soak.memory([(0.0, 80 * MB), (2.0, None), (3.0, 100 * MB), (4.0, None)], warmup=1.0)
    assert mem is not None and (mem.warm, mem.end, mem.samples) == (100 * MB, 100 * MB, 2)
    assert soak.memory([(0.0, 80 * MB), (2.0, None)], warmup=1.0) is None


def test_a_soak_passes_only_without_a_failed_request_and_with_less_than_ten_percent_growth() -> None:
    def mem(warm: int, end: int) -> soak.Memory:
        return soak.Memory(warmup_seconds=10, warm=warm, end=end, peak=max(warm, end), samples=60)

    assert soak.verdict(0, mem(100 * MB, 109 * MB)).passed
    assert soak.verdict(0, mem(100 * MB, 90 * MB)).passed  # memory handed back is no leak

    grew = soak.verdict(0, mem(100 * MB, 110 * MB))
    assert not grew.passed and "grew +10.0 %" in grew.reasons[0]

    failed = soak.verdict(3, mem(100 * MB, 100 * MB))
    assert not failed.passed and failed.reasons == ("3 failed requests",)

    blind = soak.verdict(0, None)  # a memory that could not be read is not a memory that did not grow
    assert not blind.passed and "could not be read" in blind.reasons[0]


def test_the_mix_interleaves_each_route_by_its_weight() -> None:
    target = scenarios.Target("TINY3.SA", 5, "input", "fp32")
    chosen = [scenarios.build(name, target, scenarios.windows(4, 5)) for name in ("predict", "health", "metrics")]
    mix = soak.schedule(chosen, {"predict": 4, "health": 2, "metrics": 1})
    names = [s.name for s in mix]
    assert sorted(names) == ["health"] * 2 + ["metrics"] + ["predict"] * 4
    assert names[:2] != ["predict", "predict"]  # spread over the cycle, not in runs
    assert names[0] == "predict" and "health" in names[:3]


# -- the real thing ---------------------------------------------------------------------------------


@pytest.mark.soak
def test_a_one_minute_soak_of_every_route_fails_no_request_and_holds_its_memory(
    models_dir: Path, prices_dir: Path, tmp_path: Path
) -> None:  # fmt: skip
    out = tmp_path / "soak.json"
    result = CliRunner().invoke(main, [
        "bench", "--start", "--models", str(models_dir), "--market-data", str(prices_dir),
        "--soak", "60", "--json", str(out),
    ], catch_exceptions=False)  # fmt: skip
    figures = json.loads(out.read_text())
    summary = {k: v for k, v in figures.items() if k != "memory_samples"}
    assert figures["errors"] == 0, summary
    assert figures["memory"]["growth_pct"] < 10, summary
    assert result.exit_code == 0, result.output

    assert {r["scenario"] for r in figures["routes"]} == set(soak.MIX)  # /predict/live too: CSV market data
    assert all(r["requests"] > 0 for r in figures["routes"]), summary
    assert figures["connections"] == 64 and figures["memory_source"] == "proc"
    assert figures["memory"]["samples"] >= 50  # about one a second
    for label in ("all routes", "p99 ms", "after the warm-up (first 6 s)", "verdict: PASS", "reproduce: lstm-predictor bench"):
        assert label in result.output
    assert "--soak 60 --connections 64 --generator aiohttp" in figures["command"]
    assert f"--market-data {prices_dir}" in figures["command"]


@pytest.mark.soak
def test_a_soak_whose_daemon_dies_fails_and_names_the_failures_by_route(
    start_daemon, models_dir: Path, tmp_path: Path
) -> None:  # fmt: skip
    daemon = start_daemon(models_dir)  # no market data: /predict/live is left out of the mix
    out = tmp_path / "soak.json"
    bench = subprocess.Popen(
        [sys.executable, "-m", "lstm_predictor", "bench", "--url", daemon.url, "--soak", "10", "--connections", "8",
         "--json", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert bench.stdout is not None
        output = []
        for line in bench.stdout:  # the first progress line: the load is on
            output.append(line)
            if " requests, " in line:
                break
        daemon.signal(signal.SIGKILL)
        output.append(bench.stdout.read())
        assert bench.wait(timeout=60) == 1, "".join(output)
    finally:
        if bench.poll() is None:
            bench.kill()
    report = "".join(output)
    assert "POST /predict/live left out: it answered 503" in report
    assert "verdict: FAIL" in report
    figures = json.loads(out.read_text())
    assert figures["errors"] > 0 and not figures["verdict"]["passed"]
    assert sum(f["count"] for f in figures["failures"]) == figures["errors"]
    assert {f["scenario"] for f in figures["failures"]} <= set(soak.MIX) - {"live"}
    assert all(not f["status"].isdigit() for f in figures["failures"]), figures["failures"]  # connection errors


def test_a_soak_refuses_options_it_would_ignore(tmp_path: Path) -> None:
    for args in (["--scenario", "predict"], ["--duration", "5"], ["--connections", "1,32"], ["--generator", "wrk"]):
        result = CliRunner().invoke(main, ["bench", "--url", "http://127.0.0.1:9", "--soak", "60", *args])
        assert result.exit_code == 2, (args, result.output)
    result = CliRunner().invoke(main, ["bench", "--url", "http://127.0.0.1:9", "--market-data", str(tmp_path)])
    assert result.exit_code == 2 and "--market-data" in result.output


def test_a_daemon_reports_its_own_resident_memory_for_a_soak_that_cannot_see_its_pid(api_daemon) -> None:
    async def read() -> int | None:
        async with aiohttp.ClientSession() as session:
            return await resident_bytes(session, api_daemon.url)

    reported = asyncio.run(read())
    seen = psutil.Process(api_daemon.process.pid).memory_info().rss
    assert reported is not None and 0.5 * seen < reported < 2 * seen
