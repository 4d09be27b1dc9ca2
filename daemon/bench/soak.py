"""A soak: many connections on a mix of routes for a long time, watching the daemon's memory.

A per-route bench runs each route for seconds; a leak (a cache without a
bound, a label per request, a buffer kept per connection) needs minutes of
every route at once to show, as resident memory that keeps growing after the
daemon is warm. So the soak drives a weighted mix of routes through the
aiohttp generator (per-route latencies and failures by status, which wrk's
summary cannot give), samples the daemon's resident memory every second, and
judges the run: no failed request at all, and less than
:data:`MAX_GROWTH_PCT` growth from the end of the warm-up to the end.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import aiohttp

from . import aio, client, process
from .aio import Tally
from .scenarios import Scenario
from .server_metrics import resident_bytes

# Route weights, in requests per cycle of 18: mostly single predictions (manual
# and v2), forecasts of every length and live predictions about a quarter,
# and health probes and Prometheus scrapes now and then, so their code paths soak too.
MIX: Mapping[str, int] = {"predict": 6, "v2": 4, "forecasts": 3, "live": 2, "health": 2, "metrics": 1}
SAMPLE_EVERY = 1.0  # seconds between two readings of the daemon's resident memory
WARMUP_SHARE = 0.10
WARMUP_CAP = 10.0  # seconds
MAX_GROWTH_PCT = 10.0

Sample = tuple[float, int | None]  # (seconds since the load started, resident bytes or None if unreadable)


def warmup_seconds(duration: float) -> float:
    """The warm-up: the first 10 % of the run or its first 10 s, whichever is shorter.

    Memory that grows while onnxruntime's arenas, the allocator's pools and
    every code path fill up for the first time is not a leak; growth after it is.
    """
    return min(WARMUP_SHARE * duration, WARMUP_CAP)


def schedule(scenarios: Sequence[Scenario], weights: Mapping[str, int] = MIX) -> list[Scenario]:
    """Each scenario ``weights[name]`` times, spread evenly over the cycle rather than in runs."""
    slots = [((k + 0.5) / weights[s.name], n, s) for n, s in enumerate(scenarios) for k in range(weights[s.name])]
    return [s for _, _, s in sorted(slots, key=lambda slot: slot[:2])]


@dataclass(frozen=True)
class Memory:
    """The daemon's resident memory over a soak, in bytes."""

    warmup_seconds: float
    warm: int  # the first reading at or after the end of the warm-up
    end: int  # the last reading, once the load stopped
    peak: int  # the largest reading, warm-up included
    samples: int  # readings taken

    @property
    def growth_pct(self) -> float:
        return (self.end - self.warm) / self.warm * 100.0


def memory(samples: Sequence[Sample], warmup: float) -> Memory | None:
    """The figures of a run's readings; None when no reading was taken after the warm-up."""
    readings = [(t, rss) for t, rss in samples if rss is not None]
    warm = next((rss for t, rss in readings if t >= warmup), None)
    if warm is None:
        return None
    return Memory(warmup, warm, readings[-1][1], max(rss for _, rss in readings), len(readings))


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reasons: tuple[str, ...]  # why it failed, or what it passed on


def verdict(errors: int, mem: Memory | None, max_growth_pct: float = MAX_GROWTH_PCT) -> Verdict:
    """Pass: not one failed request, and memory grew less than ``max_growth_pct`` after the warm-up."""
    failed = []
    if errors:
        failed.append(f"{errors:,} failed requests")
    if mem is None:
        failed.append("the daemon's resident memory could not be read after the warm-up")
    elif mem.growth_pct >= max_growth_pct:
        failed.append(f"resident memory grew {mem.growth_pct:+.1f} % after the warm-up (limit {max_growth_pct:g} %)")
    if failed:
        return Verdict(False, tuple(failed))
    assert mem is not None
    return Verdict(True, ("0 failed requests", f"memory growth {mem.growth_pct:+.1f} % < {max_growth_pct:g} %"))


async def _resident(session: aiohttp.ClientSession, base_url: str, pid: int | None) -> int | None:
    """From /proc when the daemon's pid is known (no request of ours involved), else from its /metrics."""
    if pid is not None:
        return process.rss_bytes(pid)
    return await resident_bytes(session, base_url)


Progress = Callable[[float, Tally, int | None], None]


async def run(
    base_url: str, mix: Sequence[Scenario], connections: int, seconds: float, pid: int | None, progress: Progress,
    token: str | None = None,
) -> tuple[Tally, list[Sample]]:  # fmt: skip
    """Drive ``mix`` for ``seconds`` while reading the daemon's memory every :data:`SAMPLE_EVERY`
    seconds, and once more when the load stops; ``progress`` is called about every tenth of the run;
    ``token``: the daemon's bearer token."""
    tally = Tally()
    samples: list[Sample] = []
    # A session of its own: a /metrics reading never waits behind the load's connections.
    async with client.session(token, timeout=aiohttp.ClientTimeout(total=5 * SAMPLE_EVERY)) as probe:
        started = time.perf_counter()
        load = asyncio.create_task(aio.drive(base_url, mix, connections, seconds, tally, token))
        ticks, next_progress = 0, seconds / 10
        while not load.done():
            now = time.perf_counter() - started
            rss = await _resident(probe, base_url, pid)
            samples.append((now, rss))
            if now >= next_progress:
                progress(now, tally, rss)
                next_progress += seconds / 10
            ticks += 1
            await asyncio.wait({load}, timeout=max(0.0, started + ticks * SAMPLE_EVERY - time.perf_counter()))
        load.result()
        samples.append((time.perf_counter() - started, await _resident(probe, base_url, pid)))
    return tally, samples
