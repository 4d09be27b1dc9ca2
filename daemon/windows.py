"""The window maths, shared by training, conversion checks, evaluation and the daemon.

A model never sees prices: it sees a window of ``look_back`` closes divided by
one of its own closes (the *reference*), and answers the next close divided by
that same reference. Keeping this in one TensorFlow-free module is what makes
training and serving agree by construction.

Two rules exist, and a bundle names the one it was trained with:

* ``window_first``: divide by the window's first close (the original model);
* ``window_last``: divide by the window's last close, so the target is a gross
  return around 1.0 and "tomorrow = today" is the output 1.0.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

Rule = Literal["window_first", "window_last"]
RULES: tuple[Rule, ...] = ("window_first", "window_last")
_REFERENCE_COLUMN = {"window_first": 0, "window_last": -1}
FP32_MAX = float(np.finfo(np.float32).max)


class WindowError(ValueError):
    """A price window that cannot be fed to a model; the message names the element."""


def check_rule(rule: str) -> Rule:
    if rule not in _REFERENCE_COLUMN:
        raise ValueError(f"unknown normalisation rule {rule!r}; expected one of {', '.join(RULES)}")
    return rule  # type: ignore[return-value]


def validate_prices(prices: Sequence[object], look_back: int) -> np.ndarray:
    """Return ``prices`` as float64, or raise WindowError saying which element is wrong and why.

    Valid input (every request on the hot path) is accepted with one vectorised
    check; anything that check does not accept is checked one by one, because
    the error must point a person at the exact element they sent.
    """
    if len(prices) != look_back:
        raise WindowError(f"expected exactly {look_back} prices (oldest first), got {len(prices)}")
    if look_back and all(type(p) is float or type(p) is int for p in prices):  # exact types: no bool, no str
        try:
            out = np.array(prices, dtype=np.float64)
        except OverflowError:  # an int beyond float range: the loop below reports it
            pass
        else:
            if out.min() > 0.0 and out.max() < math.inf:  # NaN fails the first comparison
                return out
    out = np.empty(look_back, dtype=np.float64)
    for i, p in enumerate(prices):
        if isinstance(p, bool) or not isinstance(p, (int, float)):
            raise WindowError(f"prices[{i}] is {p!r}: every price must be a number")
        try:
            value = float(p)
        except OverflowError:  # an int beyond float range (JSON allows any number of digits)
            value = math.inf
        if not math.isfinite(value):
            raise WindowError(f"prices[{i}] is {p!r}: every price must be finite")
        if value <= 0.0:
            raise WindowError(f"prices[{i}] is {p!r}: every price must be greater than 0")
        out[i] = value
    return out


def check_scale(windows: np.ndarray, rule: Rule) -> None:
    """Raise WindowError for the first window ``(look_back,)`` or ``(n, look_back)`` whose closes
    are too far apart for the model: their ratios to the reference close are the model's
    input, and must be finite in float32 (else the model answers inf or NaN, or nonsense)."""
    windows = np.atleast_2d(windows)
    with np.errstate(over="ignore"):  # an overflow is what this looks for
        spans = windows.max(axis=1) / reference_prices(windows, rule)
    wide = np.flatnonzero(~(spans <= FP32_MAX))
    if wide.size:
        b = wide[0]
        what = "the window" if len(windows) == 1 else f"window {b}"
        raise WindowError(
            f"{what} spans too wide a range for the model: its largest close, {float(windows[b].max())!r}, is "
            f"{spans[b]:.3g} times its reference close ({rule}), beyond the {FP32_MAX:.3g} its float32 input holds"
        )


def check_predictions(prices: np.ndarray, limit: float = sys.float_info.max) -> None:
    """Raise WindowError for the first predicted price (one per window, or per forecast day)
    that is not a positive finite number up to ``limit``: closes this extreme are beyond
    what the model can answer, and an answer of inf, NaN or <= 0 is no price."""
    prices = np.asarray(prices, dtype=np.float64).reshape(-1)
    bad = np.flatnonzero(~((prices > 0.0) & (prices <= limit)))  # NaN fails both
    if bad.size:
        i = bad[0]
        what = "the predicted price" if len(prices) == 1 else f"predicted price {i + 1} of {len(prices)}"
        raise WindowError(
            f"{what} is {float(prices[i])!r}, not a positive number of at most {limit:.3g}: "
            "these closes are beyond what the model can answer"
        )


def reference_prices(windows: np.ndarray, rule: Rule) -> np.ndarray:
    """The price each window is divided by: shape ``(n,)`` for windows of shape ``(n, look_back)``."""
    return windows[:, _REFERENCE_COLUMN[check_rule(rule)]]


def normalise(windows: np.ndarray, rule: Rule) -> tuple[np.ndarray, np.ndarray]:
    """Windows ``(n, look_back)`` of raw prices -> model input ``(n, look_back, 1)`` float32 and references ``(n,)``."""
    windows = np.asarray(windows, dtype=np.float64)
    if windows.ndim != 2:
        raise WindowError(f"windows must be a 2-D array (n, look_back), got shape {windows.shape}")
    refs = reference_prices(windows, rule)
    x = (windows / refs[:, None]).astype(np.float32)[:, :, None]
    return x, refs


def denormalise(ratios: np.ndarray, refs: np.ndarray) -> np.ndarray:
    """Model outputs (ratios to the reference) -> prices, in float64."""
    return np.asarray(ratios, dtype=np.float64).reshape(-1) * np.asarray(refs, dtype=np.float64)


@dataclass(frozen=True)
class TrainingWindows:
    """Supervised pairs cut from one series: ``x[i]`` predicts ``closes[targets[i]]``."""

    x: np.ndarray  # (n, look_back, 1) float32, normalised
    y: np.ndarray  # (n,) float32, target close / reference
    refs: np.ndarray  # (n,) float64, the reference price of each window
    targets: np.ndarray  # (n,) int, index of each target close in the series

    def __len__(self) -> int:
        return len(self.y)


def training_windows(
    closes: np.ndarray, look_back: int, rule: Rule, start: int | None = None, stop: int | None = None
) -> TrainingWindows:
    """Windows whose *targets* are the closes at indices ``start .. stop-1``.

    Each window is the ``look_back`` closes just before its target, so the
    first window of a validation or test part reaches back into the part before
    it (its inputs are known history) while no target ever crosses a boundary.
    """
    closes = np.asarray(closes, dtype=np.float64)
    start = look_back if start is None else start
    stop = len(closes) if stop is None else stop
    if start < look_back:
        raise WindowError(f"the first target index must be >= look_back ({look_back}), got {start}")
    if stop > len(closes) or stop <= start:
        raise WindowError(f"no targets in [{start}, {stop}) for a series of {len(closes)} closes")
    targets = np.arange(start, stop)
    # A strided view: one row per target, no copy of the series per window.
    view = np.lib.stride_tricks.sliding_window_view(closes, look_back)
    windows = view[targets - look_back]
    x, refs = normalise(windows, rule)
    y = (closes[targets] / refs).astype(np.float32)
    return TrainingWindows(x=x, y=y, refs=refs, targets=targets)
