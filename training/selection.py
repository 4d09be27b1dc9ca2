"""Choosing among bundles trained on the same data: validation scores first, serving cost as the tie-break.

The rule only ever reads the VALIDATION split. For an edge model the cost of one
inference matters too, but only between candidates whose validation MAPE is too
close to call: a cheaper model never wins against a clearly better one.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from lstm_predictor.daemon.bundle import Bundle
from lstm_predictor.daemon.engine import Engine

from .metrics import beats_persistence

# Validation MAPEs within this many percentage points of the best are a tie.
MAPE_TIE = 0.005
RULE = (
    "a candidate must beat persistence on validation MAE, RMSE, MAPE and R²; among those the lowest validation "
    f"MAPE wins, and candidates whose validation MAPE is within {MAPE_TIE:g} percentage points of that lowest "
    "one count as tied, the tie going to the cheapest to serve (lowest batch-1 latency)"
)


@dataclass(frozen=True)
class Candidate:
    name: str
    validation: dict[str, Any]  # a bundle's metrics["validation"]: model and persistence scores
    latency_ms: float


def qualifies(candidate: Candidate) -> bool:
    return all(beats_persistence(candidate.validation).values())


def choose(candidates: Sequence[Candidate]) -> Candidate | None:
    """The candidate :data:`RULE` picks, or None when none beats persistence on validation."""
    eligible = [c for c in candidates if qualifies(c)]
    if not eligible:
        return None
    best = min(c.validation["model"]["mape"] for c in eligible)
    tied = [c for c in eligible if c.validation["model"]["mape"] <= best + MAPE_TIE]
    return min(tied, key=lambda c: c.latency_ms)


def batch1_latency_ms(bundles: Sequence[Bundle], runs: int = 2000, warm_up: int = 200) -> list[float]:
    """Median time of one batch-1 ``model.onnx`` run per bundle through the daemon's Engine, in ms.

    The bundles are timed interleaved, round by round, so that load from other
    processes on a shared machine falls on all of them alike.
    """
    engines = [Engine(b) for b in bundles]
    inputs = [np.ones((1, b.look_back, 1), dtype=np.float32) for b in bundles]
    for engine, x in zip(engines, inputs):
        for _ in range(warm_up):
            engine.run_normalised(x)
    times: list[list[int]] = [[] for _ in engines]
    for _ in range(runs):
        for engine, x, spent in zip(engines, inputs, times):
            start = time.perf_counter_ns()
            engine.run_normalised(x)
            spent.append(time.perf_counter_ns() - start)
    return [statistics.median(spent) / 1e6 for spent in times]
