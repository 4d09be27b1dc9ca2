"""Proof that the ONNX graph answers what the Keras model answers.

Both run on the same normalised windows: real ones when price data is given,
otherwise geometric random walks, which cover the range of ratios a price
series produces without needing any data.
"""

from __future__ import annotations

import numpy as np

PARITY_TOLERANCE = 1e-4


def generated_windows(count: int, look_back: int, seed: int = 0) -> np.ndarray:
    """Raw price windows ``(count, look_back)``: random walks with 2 % daily volatility from varied levels."""
    rng = np.random.default_rng(seed)
    start = rng.uniform(5.0, 100.0, size=(count, 1))
    steps = rng.normal(0.0, 0.02, size=(count, look_back - 1))
    return start * np.exp(np.concatenate([np.zeros((count, 1)), np.cumsum(steps, axis=1)], axis=1))


def real_windows(closes: np.ndarray, look_back: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``count`` windows evenly spread over a real series, and the close that followed each."""
    closes = np.asarray(closes, dtype=np.float64)
    view = np.lib.stride_tricks.sliding_window_view(closes[:-1], look_back)
    picks = np.unique(np.linspace(0, len(view) - 1, num=min(count, len(view))).round().astype(int))
    return np.ascontiguousarray(view[picks]), closes[picks + look_back]


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64).reshape(-1) - np.asarray(b, dtype=np.float64).reshape(-1))))
