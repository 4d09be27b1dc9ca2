"""The requests a benchmark sends: one body per price window, for each route measured,
and the GET routes a soak mixes in.

The windows are seeded random walks at a PETR4-like price level: an LSTM's
cost does not depend on the values it reads, and seeded windows make every
run (and the Keras baseline beside it) see exactly the same inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
import numpy as np

FORECAST_DAYS = 30
NAMES = ("predict", "forecast", "v2")
# A soak's routes: the inference routes, forecasts of every length a client
# might ask for, live predictions from the daemon's market data, and the
# probes and scrapes a supervisor and Prometheus send.
SOAK_NAMES = ("predict", "forecasts", "v2", "live", "health", "metrics")
FORECAST_HORIZONS = (1, 2, 5, 10, 20, 30)


@dataclass(frozen=True)
class Target:
    """The model addressed, as the daemon describes it (its v2 model metadata)."""

    name: str
    look_back: int
    v2_input: str  # the v2 input tensor's name
    variant: str  # "fp32" | "int8", as the daemon reports it


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    path: str
    route: str  # the route template, as the daemon labels its metrics
    bodies: tuple[bytes, ...]  # empty bodies for GET
    method: str = "POST"


def windows(count: int, look_back: int, seed: int = 0) -> np.ndarray:
    """``count`` windows of ``look_back`` positive prices, rounded to cents like real closes."""
    rng = np.random.default_rng(seed)
    walks = 35.0 * np.cumprod(1.0 + rng.normal(0.0, 0.02, (count, look_back)), axis=1)
    return np.round(walks, 2)


def build(name: str, target: Target, prices: np.ndarray) -> Scenario:
    """The scenario ``name`` (one of :data:`NAMES` or :data:`SOAK_NAMES`) for ``target`` over the given windows."""
    encode = msgspec.json.encode
    model = target.name
    rows = [row.tolist() for row in prices]
    if name == "predict":
        return Scenario(name, "POST /predict", "/predict", "/predict", tuple(encode({"symbol": model, "prices": r}) for r in rows))
    if name == "forecast":
        return Scenario(
            name,
            f"POST /predict/forecast ({FORECAST_DAYS} days, given prices)",
            "/predict/forecast",
            "/predict/forecast",
            tuple(encode({"symbol": model, "prices": r, "days": FORECAST_DAYS}) for r in rows),
        )
    if name == "v2":
        look_back = prices.shape[1]
        tensor = {"name": target.v2_input, "shape": [1, look_back, 1], "datatype": "FP32"}
        return Scenario(
            name,
            f"POST /v2/models/{{name}}/infer (FP32 [1, {look_back}, 1])",
            f"/v2/models/{model}/infer",
            "/v2/models/{name}/infer",
            tuple(encode({"inputs": [{**tensor, "data": r}]}) for r in rows),
        )
    if name == "forecasts":
        horizons = FORECAST_HORIZONS
        return Scenario(
            name,
            f"POST /predict/forecast ({horizons[0]}-{horizons[-1]} days, given prices)",
            "/predict/forecast",
            "/predict/forecast",
            tuple(encode({"symbol": model, "prices": r, "days": horizons[i % len(horizons)]}) for i, r in enumerate(rows)),
        )
    if name == "live":
        return Scenario(name, "POST /predict/live", "/predict/live", "/predict/live", (encode({"symbol": model}),))
    if name in ("health", "metrics"):
        return Scenario(name, f"GET /{name}", f"/{name}", f"/{name}", (b"",), "GET")
    raise ValueError(f"unknown scenario {name!r}; expected one of {', '.join(dict.fromkeys(NAMES + SOAK_NAMES))}")
