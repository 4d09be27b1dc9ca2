"""Specification of the window maths every component shares."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lstm_predictor.daemon.windows import WindowError, denormalise, normalise, validate_prices


@pytest.mark.parametrize("rule, ref", [("window_first", 10.0), ("window_last", 40.0)])
def test_each_rule_divides_by_its_own_reference_and_round_trips(rule: str, ref: float) -> None:
    window = np.array([[10.0, 20.0, 30.0, 40.0]])
    x, refs = normalise(window, rule)
    assert x.shape == (1, 4, 1) and x.dtype == np.float32
    assert refs[0] == ref
    assert denormalise(x[:, -1, 0], refs)[0] == pytest.approx(40.0)


@pytest.mark.parametrize(
    "prices, message",
    [
        ([1.0] * 59, "expected exactly 60 prices"),
        ([1.0] * 30 + [math.nan] + [1.0] * 29, r"prices\[30\] is nan: every price must be finite"),
        ([1.0] * 59 + [0], r"prices\[59\] is 0: every price must be greater than 0"),
        (["1"] + [1.0] * 59, r"prices\[0\] is '1': every price must be a number"),
        ([True] + [1.0] * 59, r"prices\[0\] is True: every price must be a number"),
        ([1.0] * 10 + [-3.5] + [1.0] * 49, r"prices\[10\] is -3.5: every price must be greater than 0"),
    ],
)
def test_invalid_prices_are_refused_naming_the_element(prices: list, message: str) -> None:
    with pytest.raises(WindowError, match=message):
        validate_prices(prices, 60)


def test_valid_prices_come_back_as_float64() -> None:
    out = validate_prices([1, 2.5] * 30, 60)
    assert out.dtype == np.float64 and out[1] == 2.5
