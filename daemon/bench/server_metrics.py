"""The daemon's own view of a run, from two scrapes of its ``/metrics`` (and its memory, from one).

Client latencies include the HTTP round trip and the load generator's share
of the CPU; the request-duration histogram's sum and count give the mean time
the daemon itself spent per request on a route, and the batch-size histogram
how much the batcher coalesced.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

REQUEST_SECONDS = "lstm_predictor_http_request_duration_seconds"
BATCH_SIZE = "lstm_predictor_inference_batch_size"
RESIDENT_MEMORY = "process_resident_memory_bytes"

Totals = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def _exposition(session: aiohttp.ClientSession, base_url: str) -> str | None:
    """The daemon's /metrics text; None if unavailable."""
    try:
        async with session.get(base_url.rstrip("/") + "/metrics") as response:
            if response.status != 200:
                return None
            return await response.text()
    except (asyncio.TimeoutError, aiohttp.ClientError):
        return None


async def resident_bytes(session: aiohttp.ClientSession, base_url: str) -> int | None:
    """The daemon's resident memory as it reports it (``process_resident_memory_bytes``):
    the way to watch a daemon whose pid is not ours to see; None if unavailable."""
    text = await _exposition(session, base_url)
    for family in text_string_to_metric_families(text or ""):
        if family.name == RESIDENT_MEMORY and family.samples:
            return int(family.samples[0].value)
    return None


async def scrape(session: aiohttp.ClientSession, base_url: str) -> Totals:
    """Sums and counts of the two histograms, keyed by (sample name, labels); empty if unavailable."""
    text = await _exposition(session, base_url)
    if text is None:
        return {}
    totals: Totals = {}
    for family in text_string_to_metric_families(text):
        if family.name not in (REQUEST_SECONDS, BATCH_SIZE):
            continue
        for sample in family.samples:
            if sample.name.endswith(("_sum", "_count")):
                totals[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return totals


@dataclass(frozen=True)
class ServerView:
    mean_seconds: float | None  # per request on the route, inside the daemon
    mean_batch: float | None  # windows per onnxruntime run, all models


def _delta(before: Totals, after: Totals, name: str, match: dict[str, str]) -> float:
    total = 0.0
    for key, value in after.items():
        sample, labels = key
        if sample == name and all(dict(labels).get(k) == v for k, v in match.items()):
            total += value - before.get(key, 0.0)
    return total


def compare(before: Totals, after: Totals, route: str) -> ServerView:
    count = _delta(before, after, REQUEST_SECONDS + "_count", {"route": route})
    seconds = _delta(before, after, REQUEST_SECONDS + "_sum", {"route": route})
    runs = _delta(before, after, BATCH_SIZE + "_count", {})
    windows = _delta(before, after, BATCH_SIZE + "_sum", {})
    return ServerView(seconds / count if count else None, windows / runs if runs else None)
