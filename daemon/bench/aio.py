"""Load from aiohttp, for machines without ``wrk``.

One client task per connection, each sending its next request as soon as the
previous answer is read (closed loop, like wrk). The client shares the CPU
with the daemon and costs more per request than wrk, so its figures are a
lower bound on the daemon's throughput; the report names the generator.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp

from .loadgen import LoadResult, percentiles
from .scenarios import Scenario

HEADERS = {"Content-Type": "application/json"}


async def _client(
    session: aiohttp.ClientSession, url: str, scenario: Scenario, offset: int, deadline: float,
    latencies: list[float], errors: list[int],
) -> None:  # fmt: skip
    bodies = scenario.bodies
    i = offset
    clock = time.perf_counter
    while clock() < deadline:
        body = bodies[i % len(bodies)]
        i += 1
        started = clock()
        try:
            async with session.post(url, data=body, headers=HEADERS) as response:
                await response.read()
                ok = response.status < 300
        except (asyncio.TimeoutError, aiohttp.ClientError):
            ok = False
        latencies.append(clock() - started)
        if not ok:
            errors[0] += 1


async def _run(base_url: str, scenario: Scenario, connections: int, seconds: float) -> LoadResult:
    url = base_url.rstrip("/") + scenario.path
    latencies: list[float] = []
    errors = [0]
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.perf_counter()
        deadline = started + seconds
        await asyncio.gather(
            *(_client(session, url, scenario, n, deadline, latencies, errors) for n in range(connections))
        )
        elapsed = time.perf_counter() - started
    p50, p90, p99 = percentiles(latencies)
    return LoadResult("aiohttp", connections, elapsed, len(latencies), errors[0], p50, p90, p99)


def run(base_url: str, scenario: Scenario, connections: int, seconds: float) -> LoadResult:
    return asyncio.run(_run(base_url, scenario, connections, seconds))
