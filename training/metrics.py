"""Forecast error metrics, always computed for the model and the persistence baseline on the same days."""

from __future__ import annotations

from typing import Any

import numpy as np

METRIC_NAMES = ("mae", "rmse", "mape", "r2", "directional_accuracy")


def scores(predicted: np.ndarray, actual: np.ndarray, previous: np.ndarray) -> dict[str, float]:
    """MAE and RMSE in price units, MAPE in percent, R², and the share of days whose direction
    (up, down or flat against the previous close) was called right.

    Persistence predicts "flat" every day, so its directional accuracy is just
    the share of days the price did not move: the fair reference for a model's
    direction calls is the share of up days, which the report shows beside it.
    """
    predicted, actual, previous = (np.asarray(a, dtype=np.float64) for a in (predicted, actual, previous))
    error = predicted - actual
    total = np.sum((actual - actual.mean()) ** 2)
    return {
        "mae": float(np.mean(np.abs(error))),
        "rmse": float(np.sqrt(np.mean(error**2))),
        "mape": float(np.mean(np.abs(error / actual)) * 100.0),
        "r2": float(1.0 - np.sum(error**2) / total) if total > 0 else float("nan"),
        "directional_accuracy": float(np.mean(np.sign(predicted - previous) == np.sign(actual - previous))),
    }


def compare(predicted: np.ndarray, actual: np.ndarray, previous: np.ndarray) -> dict[str, Any]:
    """One split's entry in a bundle's ``metrics``: the model beside persistence (``previous``)."""
    return {
        "model": scores(predicted, actual, previous),
        "persistence": scores(previous, actual, previous),
        "days": len(actual),
        "up_days_share": float(np.mean(actual > previous)),
    }


def beats_persistence(split: dict[str, Any]) -> dict[str, bool]:
    """Per error metric: is the model strictly better than persistence?"""
    model, base = split["model"], split["persistence"]
    return {
        "mae": model["mae"] < base["mae"],
        "rmse": model["rmse"] < base["rmse"],
        "mape": model["mape"] < base["mape"],
        "r2": model["r2"] > base["r2"],
    }
