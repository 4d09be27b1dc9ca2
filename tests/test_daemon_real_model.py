"""The daemon serving the real PETR4 LSTM on the real closes: its answers are the engine's.

Uses the shipped bundle models/PETR4.SA, or where it is absent the original model
converted at test time (which needs the train extra and ../shared).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from lstm_predictor.daemon.bundle import read_bundle
from lstm_predictor.daemon.engine import Engine
from lstm_predictor.daemon.market_data import CsvFileSource


@pytest.fixture(scope="module")
def real_bundle(request: pytest.FixtureRequest, repo_dir: Path) -> Path:
    shipped = repo_dir / "models" / "PETR4.SA"
    return shipped if shipped.is_dir() else request.getfixturevalue("seed_bundle")


def test_real_model_live_and_manual_predictions_match_the_engine(start_daemon, real_bundle: Path,
                                                                 shared_dir: Path, tmp_path: Path) -> None:
    shutil.copytree(real_bundle, tmp_path / "models" / "PETR4.SA")
    daemon = start_daemon(tmp_path / "models", shared_dir / "data")
    closes = CsvFileSource(shared_dir / "data" / "PETR4.SA.csv").fetch("PETR4.SA").closes[-60:]
    expected = float(Engine(read_bundle(real_bundle)).predict(closes[None, :]).prices[0])

    live = daemon.post("/predict/live", {"symbol": "PETR4.SA"}).json()
    assert live["last_data_date"] == "2024-07-19" and live["prediction_for_date"] == "2024-07-22"
    assert live["predicted_price"] == pytest.approx(expected, abs=1e-4)
    assert live["last_known_price"] == pytest.approx(float(closes[-1]), abs=1e-4)

    manual = daemon.post("/predict", {"symbol": "PETR4.SA", "prices": [float(c) for c in closes]}).json()
    assert manual["predicted_price"] == live["predicted_price"]

    forecast = daemon.post("/predict/forecast", {"symbol": "PETR4.SA", "days": 3}).json()["forecast"]
    assert forecast[0]["predicted_price"] == live["predicted_price"]
    assert all(np.isfinite(day["predicted_price"]) and day["predicted_price"] > 0 for day in forecast)
