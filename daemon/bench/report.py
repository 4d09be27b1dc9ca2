"""The bench's printed report: one row per scenario and concurrency, then memory,
start-up, the Keras comparison and the command that reproduces the run; or a
soak's rows per route, its failures, its memory and its verdict."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from .aio import Tally
from .keras_baseline import KerasResult
from .loadgen import LoadResult
from .scenarios import FORECAST_DAYS, Scenario
from .server_metrics import ServerView
from .soak import Memory, Sample, Verdict

MB = 1024 * 1024


@dataclass(frozen=True)
class Row:
    scenario: Scenario
    load: LoadResult
    server: ServerView
    cpu_seconds: float | None  # the daemon's CPU time during the run

    @property
    def cpu_per_request(self) -> float | None:
        if self.cpu_seconds is None or not self.load.requests:
            return None
        return self.cpu_seconds / self.load.requests


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None or math.isnan(seconds) else f"{seconds * 1e3:.2f}"


def mb(nbytes: int | None) -> str:
    return "unknown" if nbytes is None else f"{nbytes / MB:.1f} MB"


def _ratio(slow: float | None, fast: float | None) -> str:
    if not slow or not fast or math.isnan(slow) or math.isnan(fast):
        return "-"
    return f"{slow / fast:,.1f}x"


def table(rows: list[Row]) -> str:
    header = ("route", "conns", "req/s", "p50 ms", "p90 ms", "p99 ms", "errors", "server ms", "batch", "cpu us/req")
    lines = [header]
    for row in rows:
        load, server = row.load, row.server
        lines.append((
            row.scenario.title, str(load.connections), f"{load.rps:,.0f}",
            _ms(load.p50), _ms(load.p90), _ms(load.p99), f"{load.errors:,}",
            _ms(server.mean_seconds), "-" if server.mean_batch is None else f"{server.mean_batch:.1f}",
            "-" if row.cpu_per_request is None else f"{row.cpu_per_request * 1e6:.0f}",
        ))  # fmt: skip
    return columns(lines, rule=True)


def columns(lines: list[tuple[str, ...]], rule: bool = False) -> str:
    """Aligned columns: the first left-aligned, the figures right-aligned; ``rule`` underlines the first line."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    out = []
    for n, line in enumerate(lines):
        cells = [line[0].ljust(widths[0])] + [cell.rjust(w) for cell, w in zip(line[1:], widths[1:])]
        out.append("  ".join(cells))
        if rule and n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def best(rows: list[Row], name: str, pick: str) -> Row | None:
    """The row of scenario ``name`` at the fewest connections (latency) or the most (throughput)."""
    matching = [r for r in rows if r.scenario.name == name]
    if not matching:
        return None
    key = lambda r: r.load.connections
    return min(matching, key=key) if pick == "latency" else max(matching, key=key)


def keras_comparison(
    rows: list[Row], keras: KerasResult, rss_after: int | None, ready_seconds: float | None
) -> str:  # fmt: skip
    k = keras.figures
    lines = [("", f"Keras {k['keras']}", "daemon", "daemon advantage")]
    latency = best(rows, "predict", "latency")
    if latency:
        lines.append((
            f"/predict p50, one client ({latency.load.connections} conn.)",
            f"{_ms(k['p50'])} ms", f"{_ms(latency.load.p50)} ms", _ratio(k["p50"], latency.load.p50),
        ))  # fmt: skip
        lines.append(("/predict p99, one client", f"{_ms(k['p99'])} ms", f"{_ms(latency.load.p99)} ms",
                      _ratio(k["p99"], latency.load.p99)))  # fmt: skip
    throughput = best(rows, "predict", "throughput")
    if throughput:
        lines.append((
            f"/predict requests/s ({throughput.load.connections} conn.)",
            f"{k['rps']:,.1f}", f"{throughput.load.rps:,.0f}", _ratio(throughput.load.rps, k["rps"]),
        ))  # fmt: skip
    forecast = best(rows, "forecast", "latency")
    if forecast:
        lines.append((
            f"{FORECAST_DAYS}-day forecast p50", f"{_ms(k['forecast_p50'])} ms", f"{_ms(forecast.load.p50)} ms",
            _ratio(k["forecast_p50"], forecast.load.p50),
        ))  # fmt: skip
    lines.append(("resident memory", mb(k["rss_bytes"]), mb(rss_after), _ratio(k["rss_bytes"], rss_after)))
    lines.append((
        "start to ready", f"{keras.ready_seconds:.2f} s",
        "-" if ready_seconds is None else f"{ready_seconds:.2f} s", _ratio(keras.ready_seconds, ready_seconds),
    ))  # fmt: skip
    return columns(lines)


def as_json(rows: list[Row], extra: dict[str, Any]) -> dict[str, Any]:
    return {
        **extra,
        "runs": [
            {
                "scenario": r.scenario.name, "route": r.scenario.route, "generator": r.load.generator,
                "connections": r.load.connections, "seconds": r.load.seconds, "requests": r.load.requests,
                "errors": r.load.errors, "rps": r.load.rps, "p50": r.load.p50, "p90": r.load.p90, "p99": r.load.p99,
                "server_mean_seconds": r.server.mean_seconds, "mean_batch": r.server.mean_batch,
                "cpu_seconds_per_request": r.cpu_per_request,
            }
            for r in rows
        ],
    }  # fmt: skip


def soak_table(tally: Tally, scenarios: Sequence[Scenario], connections: int) -> str:
    """One row per route of the mix, then all routes together."""
    lines = [("route", "share", "requests", "req/s", "p50 ms", "p90 ms", "p99 ms", "errors")]
    total = tally.requests
    for title, load in [(s.title, tally.result(connections, s.name)) for s in scenarios] + [
        ("all routes", tally.result(connections))
    ]:
        share = f"{load.requests / total * 100:.0f} %" if total else "-"
        lines.append((title, share, f"{load.requests:,}", f"{load.rps:,.0f}", _ms(load.p50), _ms(load.p90),
                      _ms(load.p99), f"{load.errors:,}"))  # fmt: skip
    return columns(lines, rule=True)


def soak_failures(tally: Tally, scenarios: Sequence[Scenario]) -> str:
    """The failed requests by route and HTTP status (or the client's exception)."""
    if not tally.failures:
        return "failed requests: none (every answer was a 2xx)"
    titles = {s.name: s.title for s in scenarios}
    lines = [("failed requests", "status", "count")]
    for (name, status), count in sorted(tally.failures.items(), key=lambda item: -item[1]):
        lines.append((titles.get(name, name), status, f"{count:,}"))
    return columns(lines, rule=True)


def soak_memory(mem: Memory | None, source: str) -> str:
    if mem is None:
        return f"daemon resident memory ({source}): no reading after the warm-up"
    return (
        f"daemon resident memory ({source}, {mem.samples} readings): "
        f"{mb(mem.warm)} after the warm-up (first {mem.warmup_seconds:g} s), {mb(mem.end)} at the end, "
        f"max {mb(mem.peak)}; growth after the warm-up {mem.growth_pct:+.1f} %"
    )


def soak_verdict(verdict: Verdict) -> str:
    return f"verdict: {'PASS' if verdict.passed else 'FAIL'} ({'; '.join(verdict.reasons)})"


def soak_json(
    tally: Tally, scenarios: Sequence[Scenario], connections: int, samples: Sequence[Sample], mem: Memory | None,
    verdict: Verdict, extra: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    def figures(name: str | None) -> dict[str, Any]:
        load = tally.result(connections, name)
        return {"requests": load.requests, "errors": load.errors, "rps": load.rps,
                "p50": load.p50, "p90": load.p90, "p99": load.p99}  # fmt: skip

    return {
        **extra,
        "connections": connections, "seconds": tally.seconds, **figures(None),
        "routes": [{"scenario": s.name, "title": s.title, "route": s.route, **figures(s.name)} for s in scenarios],
        "failures": [{"scenario": name, "status": status, "count": count}
                     for (name, status), count in sorted(tally.failures.items())],
        "memory": None if mem is None else {**asdict(mem), "growth_pct": mem.growth_pct},
        "memory_samples": [[t, rss] for t, rss in samples],
        "verdict": {"passed": verdict.passed, "reasons": list(verdict.reasons)},
    }  # fmt: skip
