"""Load from aiohttp, for machines without ``wrk``, and for mixes of routes.

One client task per connection, each sending its next request as soon as the
previous answer is read (closed loop, like wrk). The client shares the CPU
with the daemon and costs more per request than wrk, so its figures are a
lower bound on the daemon's throughput; the report names the generator.

A client walks a *schedule*, a sequence of scenarios (one scenario for the
per-route bench; a weighted mix for a soak), each client from its own offset,
so that the daemon sees every route all the time. Latencies and failures are
tallied per scenario.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiohttp

from . import client
from .loadgen import LoadResult, percentiles
from .scenarios import Scenario

HEADERS = {"Content-Type": "application/json"}
TIMEOUT = aiohttp.ClientTimeout(total=10)


@dataclass
class Tally:
    """What the clients saw, per scenario name."""

    latencies: dict[str, list[float]] = field(default_factory=dict)  # seconds, failures included
    # (scenario name, HTTP status or the exception's class name) -> count; anything but a 2xx
    failures: Counter[tuple[str, str]] = field(default_factory=Counter)
    seconds: float = 0.0  # wall time of the whole run

    @property
    def requests(self) -> int:
        return sum(len(values) for values in self.latencies.values())

    def errors(self, name: str | None = None) -> int:
        return sum(n for (scenario, _), n in self.failures.items() if name is None or scenario == name)

    def result(self, connections: int, name: str | None = None) -> LoadResult:
        """The figures of one scenario, or of all together (``name`` None)."""
        if name is None:
            latencies = [x for values in self.latencies.values() for x in values]
        else:
            latencies = self.latencies.get(name, [])
        p50, p90, p99 = percentiles(latencies)
        return LoadResult("aiohttp", connections, self.seconds, len(latencies), self.errors(name), p50, p90, p99)


async def _client(
    session: aiohttp.ClientSession, base_url: str, schedule: Sequence[Scenario], offset: int, deadline: float,
    tally: Tally,
) -> None:  # fmt: skip
    i = offset
    clock = time.perf_counter
    while clock() < deadline:
        scenario = schedule[i % len(schedule)]
        # The next body of this scenario: offsets spread the clients over bodies too.
        body = scenario.bodies[(i // len(schedule)) % len(scenario.bodies)]
        i += 1
        post = scenario.method == "POST"
        started = clock()
        try:
            async with session.request(scenario.method, base_url + scenario.path, data=body if post else None,
                                       headers=HEADERS if post else None) as response:  # fmt: skip
                await response.read()
                failure = None if response.status < 300 else str(response.status)
        except (asyncio.TimeoutError, aiohttp.ClientError) as exc:
            failure = type(exc).__name__
        tally.latencies.setdefault(scenario.name, []).append(clock() - started)
        if failure is not None:
            tally.failures[(scenario.name, failure)] += 1


async def drive(
    base_url: str, schedule: Sequence[Scenario], connections: int, seconds: float, tally: Tally | None = None,
    token: str | None = None,
) -> Tally:  # fmt: skip
    """Hold ``connections`` clients on ``schedule`` for ``seconds``; what they saw, in ``tally``
    if given (which then shows the run's progress while it lasts); ``token``: the daemon's bearer token."""
    base_url = base_url.rstrip("/")
    tally = Tally() if tally is None else tally
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    async with client.session(token, connector=connector, timeout=TIMEOUT) as session:
        started = time.perf_counter()
        deadline = started + seconds
        await asyncio.gather(*(_client(session, base_url, schedule, n, deadline, tally) for n in range(connections)))
        tally.seconds = time.perf_counter() - started
    return tally


def run(base_url: str, scenario: Scenario, connections: int, seconds: float, token: str | None = None) -> LoadResult:
    tally = asyncio.run(drive(base_url, (scenario,), connections, seconds, token=token))
    return tally.result(connections, scenario.name)
