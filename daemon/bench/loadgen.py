"""What a load generator reports, whichever one ran."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LoadResult:
    """One scenario at one concurrency. Latencies are seconds, measured by the client."""

    generator: str  # "wrk" | "aiohttp"
    connections: int
    seconds: float  # wall time of the measured period
    requests: int  # completed requests, errors included
    errors: int  # transport errors, timeouts and non-2xx answers
    p50: float
    p90: float
    p99: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


PERCENTILES = (50, 90, 99)


def percentiles(latencies: list[float] | np.ndarray) -> tuple[float, float, float]:
    """p50, p90, p99 of a sample (NaN when empty, so an all-error run still prints)."""
    if len(latencies) == 0:
        return (float("nan"),) * 3  # type: ignore[return-value]
    p50, p90, p99 = np.percentile(np.asarray(latencies, dtype=np.float64), PERCENTILES)
    return float(p50), float(p90), float(p99)
