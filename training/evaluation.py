"""Scoring a bundle the way it ships: its ONNX graph through the daemon's Engine, not Keras."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from lstm_predictor.daemon.bundle import Bundle
from lstm_predictor.daemon.engine import Engine
from lstm_predictor.daemon.market_data import PriceSeries
from lstm_predictor.daemon.windows import denormalise

from .metrics import compare
from .splits import Part, Splits


@dataclass(frozen=True)
class PartResult:
    part: Part
    targets: np.ndarray  # row indices of the predicted closes
    predicted: np.ndarray
    actual: np.ndarray
    previous: np.ndarray  # the persistence forecast: the close before each target

    def metrics(self) -> dict[str, Any]:
        return compare(self.predicted, self.actual, self.previous)


def predict_parts(bundle: Bundle, series: PriceSeries, splits: Splits) -> dict[str, PartResult]:
    engine = Engine(bundle)
    out = {}
    for part in splits:
        windows = splits.windows(series.closes, part, bundle.normalisation)
        ratios = engine.run_normalised(windows.x).astype(np.float64)
        out[part.name] = PartResult(
            part=part,
            targets=windows.targets,
            predicted=denormalise(ratios, windows.refs),
            actual=series.closes[windows.targets],
            previous=series.closes[windows.targets - 1],
        )
    return out


def metrics_of(results: dict[str, PartResult]) -> dict[str, Any]:
    return {name: result.metrics() for name, result in results.items()}
