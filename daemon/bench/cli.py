"""``lstm-predictor bench``: measure a daemon under load, optionally beside the Keras service it replaces,
or soak it: every route at once for minutes, watching its memory."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
from collections.abc import Collection
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import click

from ..config import ENV_PREFIX, OPTION_BY_NAME, ConfigError, read_token
from . import aio, client, process, report, scenarios, soak, wrk
from .keras_baseline import KerasResult
from .keras_baseline import run as run_keras
from .loadgen import LoadResult
from .report import Row, as_json, keras_comparison, mb, table
from .scenarios import FORECAST_DAYS, Scenario, Target
from .server_metrics import RESIDENT_MEMORY, compare, scrape

DEFAULT_KERAS_MODEL = Path("../shared/seed-model/lstm_petr4_final.keras")
DEFAULT_CONNECTIONS = (1, 32)
SOAK_CONNECTIONS = 64
# The daemon's own variable: a shell set up to run a protected daemon benches it as it is.
TOKEN_FILE_ENV = OPTION_BY_NAME["token_file"].env


def _connections(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...] | None:
    if value is None:  # the default depends on --soak
        return None
    try:
        counts = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter("a comma-separated list of connection counts, e.g. 1,32") from None
    if not counts or min(counts) < 1:
        raise click.BadParameter("connection counts must be at least 1")
    return counts


@click.command()
@click.option("--url", help="Bench a running daemon at this base URL, e.g. http://127.0.0.1:8000.")
@click.option("--start", is_flag=True, help="Start a daemon of our own (needs --models) and time it to ready.")
@click.option("--models", type=click.Path(exists=True, file_okay=False, path_type=Path), help="Models directory for --start.")
@click.option("--model", "model_name", help="Model to address (default: the daemon's default model).")
@click.option("--scenario", "scenario_names", type=click.Choice(scenarios.NAMES), multiple=True,
              help="Route to measure; repeat for several (default: all).")  # fmt: skip
@click.option("--connections", callback=_connections,
              help="Concurrent connections, comma-separated: each route is measured at each [default: 1,32]; "
                   f"with --soak, one count [default: {SOAK_CONNECTIONS}].")  # fmt: skip
@click.option("--duration", type=click.FloatRange(min=1), default=10.0, show_default=True, help="Seconds per run.")
@click.option("--soak", "soak_seconds", type=click.FloatRange(min=10), metavar="SECONDS",
              help="Soak instead: hold the connections on a mix of every route for SECONDS, reading the daemon's "
                   "resident memory every second; exit 1 unless no request failed and memory grew less than "
                   f"{soak.MAX_GROWTH_PCT:g} % after the warm-up.")  # fmt: skip
@click.option("--market-data", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="With --start: the daemon's directory of <SYMBOL>.csv closes, for /predict/live offline.")  # fmt: skip
@click.option("--generator", type=click.Choice(["auto", "wrk", "aiohttp"]), default="auto", show_default=True,
              help="Load generator: wrk when installed (auto), or the built-in aiohttp client.")  # fmt: skip
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True, help="wrk threads.")
@click.option("--windows", "window_count", type=click.IntRange(min=1), default=64, show_default=True,
              help="Distinct price windows cycled through (seeded random walks).")  # fmt: skip
@click.option("--baseline", type=click.Choice(["none", "keras"]), default="none", show_default=True,
              help="Also time the original Keras model on the same windows, in a child process.")  # fmt: skip
@click.option("--keras-model", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_KERAS_MODEL,
              show_default=True, help="Keras model for --baseline keras (needs the train extra).")  # fmt: skip
@click.option("--keras-requests", type=click.IntRange(min=1), default=200, show_default=True,
              help="Single-window predictions timed for the Keras baseline.")  # fmt: skip
@click.option("--token-file", type=click.Path(dir_okay=False, path_type=Path), envvar=TOKEN_FILE_ENV, show_envvar=True,
              help="File holding the bearer token of a daemon started with --token-file; sent on every request "
                   "(and, with --start, given to the daemon it starts).")  # fmt: skip
@click.option("--json", "json_file", type=click.Path(dir_okay=False, path_type=Path), help="Also write the figures here.")
def bench(**opts: Any) -> None:
    """Load a daemon's /predict, /predict/forecast and v2 infer routes and print latency
    percentiles, requests/s, errors and the daemon's resident memory; or, with --soak,
    load every route at once for minutes and judge its failures and memory growth.

    \b
    Examples:
      lstm-predictor bench --start --models models
      lstm-predictor bench --url http://127.0.0.1:8000 --connections 32 --duration 30
      lstm-predictor bench --start --models models --baseline keras
      lstm-predictor bench --start --models models --market-data prices --soak 600
      lstm-predictor bench --url http://127.0.0.1:8000 --token-file /etc/lstm-predictor/token
    """
    if bool(opts["url"]) == bool(opts["start"]):
        raise click.UsageError("give either --url (a running daemon) or --start --models DIR")
    if opts["start"] and opts["models"] is None:
        raise click.UsageError("--start needs --models DIR")
    if opts["market_data"] is not None and not opts["start"]:
        raise click.UsageError("--market-data configures the daemon that --start starts; a running daemon has its own")
    if opts["baseline"] == "keras" and not opts["keras_model"].is_file():
        raise click.UsageError(f"--baseline keras: no Keras model at {opts['keras_model']} (give --keras-model FILE)")
    soaking = opts["soak_seconds"] is not None
    if soaking:
        _check_soak_usage(opts)
    if opts["connections"] is None:
        opts["connections"] = (SOAK_CONNECTIONS,) if soaking else DEFAULT_CONNECTIONS
    token = _token(opts["token_file"])
    generator = opts["generator"]
    if generator == "auto":
        generator = "wrk" if wrk.available() and not soaking else "aiohttp"
    elif generator == "wrk" and not wrk.available():
        raise click.UsageError("wrk is not installed (apt-get install wrk), or use --generator aiohttp")

    daemon = None
    if opts["start"]:
        extra = ("--market-data", str(opts["market_data"])) if opts["market_data"] else ()
        extra += ("--token-file", str(opts["token_file"])) if opts["token_file"] else ()
        command = process.serve_command(opts["models"], 0)[:-1]
        click.echo(f"starting: {shlex.join(command)} <a free port> {shlex.join(extra)}".rstrip())
        try:
            daemon = process.start(opts["models"], extra=extra)
        except RuntimeError as exc:
            raise click.ClickException(str(exc)) from exc
        url, pid, ready_seconds = daemon.url, daemon.pid, daemon.ready_seconds
    else:
        url = opts["url"].rstrip("/")
        parts = urlsplit(url)
        local = parts.hostname in ("127.0.0.1", "localhost", "::1")
        pid = process.pid_listening_on(parts.port or 80) if local else None
        ready_seconds = None
    try:
        figures = (_soak if soaking else _bench)(opts, url, pid, ready_seconds, generator, token)
    finally:
        if daemon is not None:
            daemon.stop()
    if opts["json_file"]:
        opts["json_file"].write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
        click.echo(f"figures written to {opts['json_file']}")
    if soaking and not figures["verdict"]["passed"]:
        raise SystemExit(1)


def _token(path: Path | None) -> str | None:
    """The bearer token in ``path``, read as the daemon reads it (so a file the daemon would refuse is refused here)."""
    if path is None:
        return None
    try:
        return read_token(path, "--token-file")
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


def _check_soak_usage(opts: dict[str, Any]) -> None:
    """A soak runs its own mix for its own time, on the aiohttp generator: refuse options it would ignore."""
    explicit = click.get_current_context().get_parameter_source("duration") is click.core.ParameterSource.COMMANDLINE
    for given, option in [(opts["scenario_names"], "--scenario"), (explicit, "--duration"),
                          (opts["baseline"] != "none", "--baseline")]:  # fmt: skip
        if given:
            raise click.UsageError(f"{option} is for the per-route bench; --soak runs every route for SECONDS")
    if opts["generator"] == "wrk":
        raise click.UsageError("--soak needs per-route latencies and failures by status, which wrk does not give: "
                               "use --generator aiohttp (or auto)")  # fmt: skip
    if opts["connections"] is not None and len(opts["connections"]) != 1:
        raise click.UsageError("--soak holds one number of connections, e.g. --connections 64")


def _bench(
    opts: dict[str, Any], url: str, pid: int | None, ready: float | None, generator: str, token: str | None
) -> dict:  # fmt: skip
    target = asyncio.run(_describe(url, opts["model_name"], token))
    model, look_back = target.name, target.look_back
    prices = scenarios.windows(opts["window_count"], look_back)
    chosen = [scenarios.build(name, target, prices) for name in (opts["scenario_names"] or scenarios.NAMES)]
    rss_before = process.rss_bytes(pid)  # before any inference request of ours
    asyncio.run(_check(url, chosen, token))

    click.echo(_daemon_line(url, pid, target))
    threads = f" ({opts['threads']} thread)" if generator == "wrk" else ""
    click.echo(f"load: {generator}{threads}, {opts['duration']:g} s per run, {os.cpu_count()} CPUs shared with the daemon")
    if ready is not None:
        click.echo(f"start to ready: {ready:.3f} s (process spawn to its READY=1)")
    load_before = os.getloadavg()
    click.echo(f"machine load average before: {_loadavg(load_before)}")
    rows: list[Row] = []
    for scenario in chosen:
        for connections in opts["connections"]:
            before, cpu_before = asyncio.run(_scrape(url, token)), process.cpu_seconds(pid)
            try:
                load = _load(generator, url, scenario, connections, opts["duration"], opts["threads"], token)
            except RuntimeError as exc:  # wrk failed to run or to report
                raise click.ClickException(str(exc)) from exc
            cpu_after = process.cpu_seconds(pid)
            cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
            rows.append(Row(scenario, load, compare(before, asyncio.run(_scrape(url, token)), scenario.route), cpu))
            click.echo(f"  {scenario.name} x{connections}: {load.rps:,.0f} req/s, p50 {load.p50 * 1e3:.2f} ms, "
                       f"{load.errors} errors")  # fmt: skip
    rss_after = process.rss_bytes(pid)
    peak = process.peak_rss_bytes(pid)
    load_after = os.getloadavg()

    click.echo("")
    click.echo(table(rows))
    click.echo("")
    click.echo("client latencies include the HTTP round trip; 'server ms' is the daemon's own mean per request "
               "(its request-duration histogram), 'batch' the mean windows per onnxruntime run, "
               "'cpu us/req' the daemon's CPU time (user + system) per request.")  # fmt: skip
    click.echo(f"machine load average after: {_loadavg(load_after)} (load from other processes skews the figures)")
    click.echo(f"daemon resident memory: {mb(rss_before)} before, {mb(rss_after)} after"
               + (f" (peak {mb(peak)})" if peak else ""))  # fmt: skip

    keras: KerasResult | None = None
    if opts["baseline"] == "keras":
        click.echo(f"\nKeras baseline: {opts['keras_model']}, one model.predict per request, batch 1, "
                   "in a child process, no HTTP (which flatters Keras) ...")  # fmt: skip
        try:
            keras = run_keras(opts["keras_model"], prices, opts["keras_requests"], 5, FORECAST_DAYS)
        except RuntimeError as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(keras_comparison(rows, keras, rss_after, ready))

    command = reproduce(opts, generator)
    click.echo(f"\nreproduce: {command}")
    return as_json(rows, {
        "command": command, "url": url, "model": model, "variant": target.variant, "generator": generator,
        "cpus": os.cpu_count(),
        "loadavg_before": load_before, "loadavg_after": load_after,
        "ready_seconds": ready, "rss_before_bytes": rss_before, "rss_after_bytes": rss_after, "rss_peak_bytes": peak,
        "keras": None if keras is None else {"ready_seconds": keras.ready_seconds, **keras.figures},
    })  # fmt: skip


def _soak(
    opts: dict[str, Any], url: str, pid: int | None, ready: float | None, generator: str, token: str | None
) -> dict:  # fmt: skip
    target = asyncio.run(_describe(url, opts["model_name"], token))
    prices = scenarios.windows(opts["window_count"], target.look_back)
    # /predict/live needs market data the daemon may not have (yfinance offline): then the mix goes without it.
    mix_scenarios = [scenarios.build(name, target, prices) for name in soak.MIX]
    chosen = asyncio.run(_check(url, mix_scenarios, token, optional={"live"}))
    mix = soak.schedule(chosen)
    connections, seconds = opts["connections"][0], opts["soak_seconds"]
    warmup = soak.warmup_seconds(seconds)
    source = f"pid {pid}, from /proc" if pid else f"from its /metrics {RESIDENT_MEMORY}"

    click.echo(_daemon_line(url, pid, target))
    click.echo(f"soak: {generator}, {connections} connections for {seconds:g} s, {os.cpu_count()} CPUs shared with the daemon")
    click.echo("mix (weight of each route): " + ", ".join(f"{s.title} {soak.MIX[s.name]}" for s in chosen))
    click.echo(f"warm-up: the first {warmup:g} s (the first {soak.WARMUP_SHARE * 100:g} % of the run, at most "
               f"{soak.WARMUP_CAP:g} s); memory growth is measured from its end")  # fmt: skip
    if ready is not None:
        click.echo(f"start to ready: {ready:.3f} s (process spawn to its READY=1)")
    load_before = os.getloadavg()
    click.echo(f"machine load average before: {_loadavg(load_before)}")

    def progress(elapsed: float, tally: aio.Tally, rss: int | None) -> None:
        click.echo(f"  {elapsed:5.0f} s: {tally.requests:,} requests, {tally.errors():,} failed, resident {mb(rss)}")

    tally, samples = asyncio.run(soak.run(url, mix, connections, seconds, pid, progress, token))
    load_after = os.getloadavg()
    mem = soak.memory(samples, warmup)
    verdict = soak.verdict(tally.errors(), mem)

    click.echo("")
    click.echo(report.soak_table(tally, chosen, connections))
    click.echo("")
    click.echo(report.soak_failures(tally, chosen))
    click.echo(report.soak_memory(mem, source))
    click.echo(f"machine load average after: {_loadavg(load_after)} (load from other processes skews the figures)")
    click.echo(report.soak_verdict(verdict))
    command = reproduce(opts, generator)
    click.echo(f"\nreproduce: {command}")
    return report.soak_json(tally, chosen, connections, samples, mem, verdict, {
        "command": command, "url": url, "model": target.name, "variant": target.variant, "generator": generator,
        "cpus": os.cpu_count(), "loadavg_before": load_before, "loadavg_after": load_after, "ready_seconds": ready,
        "warmup_seconds": warmup, "memory_source": "proc" if pid else "metrics",
    })  # fmt: skip


def _daemon_line(url: str, pid: int | None, target: Target) -> str:
    where = f"pid {pid}" if pid else "pid unknown: not a local daemon, or not permitted to see it"
    return f"daemon {url} ({where}), model {target.name} ({target.variant}), look_back {target.look_back}"


def _loadavg(figures: tuple[float, float, float]) -> str:
    return " ".join(f"{v:.2f}" for v in figures) + " (1, 5, 15 min)"


def _load(
    generator: str, url: str, scenario: Scenario, connections: int, seconds: float, threads: int, token: str | None
) -> LoadResult:  # fmt: skip
    if generator == "wrk":
        return wrk.run(url, scenario, connections, seconds, threads, token)
    return aio.run(url, scenario, connections, seconds, token)


async def _scrape(url: str, token: str | None) -> dict:
    async with client.session(token) as session:
        return await scrape(session, url)


async def _describe(url: str, model_name: str | None, token: str | None) -> Target:
    """The model to address, as the daemon's v2 model metadata describes it."""
    async with client.session(token, timeout=aiohttp.ClientTimeout(total=10)) as session:
        try:
            if model_name is None:
                async with session.get(f"{url}/") as response:
                    _refuse_unauthorized("GET /", response.status, await response.text())
                    model_name = (await response.json())["default_model"]
            async with session.get(f"{url}/v2/models/{model_name}") as response:
                _refuse_unauthorized(f"GET /v2/models/{model_name}", response.status, await response.text())
                if response.status != 200:
                    raise click.ClickException(f"{url} has no model {model_name!r}: {await response.text()}")
                meta = await response.json()
            tensor = meta["inputs"][0]
            return Target(meta["name"], int(tensor["shape"][1]), tensor["name"], meta.get("parameters", {}).get("variant", "?"))
        except (asyncio.TimeoutError, aiohttp.ClientError, KeyError, ValueError, IndexError, TypeError) as exc:
            raise click.ClickException(f"cannot describe the daemon's models at {url}: {exc!r}") from exc


def _refuse_unauthorized(request: str, status: int, text: str) -> None:
    """A 401 stops the bench before any load, saying what to give (every route after it would answer 401 too)."""
    if status == 401:
        raise click.ClickException(f"{request} answered 401: {text[:500]} (give --token-file FILE holding the "
                                   "daemon's bearer token)")  # fmt: skip


async def _check(
    url: str, chosen: list[Scenario], token: str | None, optional: Collection[str] = ()
) -> list[Scenario]:  # fmt: skip
    """One request per route before any load: a benchmark of error answers measures nothing.
    The scenarios that answered 200; one named in ``optional`` that did not is left out, saying why."""
    answered = []
    async with client.session(token, timeout=aiohttp.ClientTimeout(total=30)) as session:
        for scenario in chosen:
            post = scenario.method == "POST"
            async with session.request(scenario.method, url + scenario.path, data=scenario.bodies[0] if post else None,
                                       headers=aio.HEADERS if post else None) as response:  # fmt: skip
                if response.status == 200:
                    answered.append(scenario)
                    continue
                text = (await response.text())[:500]
            _refuse_unauthorized(scenario.title, response.status, text)
            if scenario.name not in optional:
                raise click.ClickException(f"{scenario.title} answered {response.status}: {text}")
            click.echo(f"{scenario.title} left out: it answered {response.status}: {text}")
    return answered


def reproduce(opts: dict[str, Any], generator: str) -> str:
    """The command line of this run with every option explicit, defaults included; with --start,
    preceded by the LSTM_PREDICTOR_* settings the started daemon inherited."""
    env = [f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith(ENV_PREFIX)] if opts["start"] else []
    args = ["lstm-predictor", "bench"]
    args += ["--start", "--models", str(opts["models"])] if opts["start"] else ["--url", opts["url"]]
    if opts["market_data"]:
        args += ["--market-data", str(opts["market_data"])]
    if opts["token_file"]:
        args += ["--token-file", str(opts["token_file"])]  # the file, never the token
    if opts["model_name"]:
        args += ["--model", opts["model_name"]]
    if opts["soak_seconds"] is not None:
        args += ["--soak", f"{opts['soak_seconds']:g}"]
    else:
        for name in opts["scenario_names"] or scenarios.NAMES:
            args += ["--scenario", name]
    args += ["--connections", ",".join(map(str, opts["connections"]))]
    if opts["soak_seconds"] is None:
        args += ["--duration", f"{opts['duration']:g}"]
    args += ["--generator", generator, "--windows", str(opts["window_count"])]
    if generator == "wrk":
        args += ["--threads", str(opts["threads"])]
    if opts["baseline"] == "keras":
        args += ["--baseline", "keras", "--keras-model", str(opts["keras_model"]),
                 "--keras-requests", str(opts["keras_requests"])]  # fmt: skip
    return shlex.join([*env, *args])
