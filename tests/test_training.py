"""Training end to end: ``train --quick`` on a synthetic random walk writes a bundle the daemon
accepts, ``evaluate`` replays it through the ONNX engine, and bad requests are refused early."""

from __future__ import annotations

import csv
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from lstm_predictor.daemon.bundle import read_bundle
from lstm_predictor.daemon.engine import Engine
from lstm_predictor.training.config import ModelConfig
from lstm_predictor.training.selection import MAPE_TIE, RULE, Candidate, choose

CLI = [sys.executable, "-m", "lstm_predictor"]


def write_random_walk(path: Path, days: int, seed: int = 7) -> np.ndarray:
    """A geometric random walk on business days, as a plain ``Date,Close`` file."""
    rng = np.random.default_rng(seed)
    closes = 20.0 * np.exp(np.cumsum(rng.normal(0.0003, 0.015, days)))
    dates = [d for d in (dt.date(2020, 1, 1) + dt.timedelta(days=i) for i in range(days * 2)) if d.weekday() < 5][:days]
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["Date", "Close"])
        writer.writerows((d.isoformat(), f"{c:.4f}") for d, c in zip(dates, closes))
    return closes


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=240)


@pytest.fixture(scope="module")
def quick_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("train")
    prices = tmp / "SYN.csv"
    write_random_walk(prices, 360)
    out = tmp / "bundle"
    done = run("train", "--symbol", "SYN", "--csv", str(prices), "--out", str(out), "--quick")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "epoch   1/2" in done.stderr  # progress is shown
    return out, prices


@pytest.mark.slow
def test_quick_train_writes_a_bundle_the_daemon_accepts(quick_bundle: tuple[Path, Path]) -> None:
    out, _ = quick_bundle
    bundle = read_bundle(out)
    assert (bundle.symbol, bundle.look_back, bundle.normalisation) == ("SYN", 60, "window_first")
    engine = Engine(bundle)
    prediction = engine.predict(np.linspace(20.0, 21.0, 60)[None, :])
    assert prediction.prices.shape == (1,) and np.isfinite(prediction.prices).all()
    assert {p.name for p in out.iterdir()} >= {"model.onnx", "metadata.json", "model.keras", "report"}

    meta = bundle.metadata
    data = meta["data"]
    assert data["source"] == "csv:SYN.csv" and data["column"] == "Close" and data["period"]["start"] == "2020-01-01"
    # cuts at int(n * cumulative fraction), as the original split did: int(360 * 0.7) is 251 in floating point
    assert [data["splits"][p]["targets"] for p in ("train", "validation", "test")] == [251 - 60, 306 - 251, 360 - 306]
    assert data["splits"]["validation"]["inputs_from"] < data["splits"]["validation"]["start"]
    for part in ("train", "validation", "test"):
        scores = meta["metrics"][part]
        assert set(scores["model"]) == set(scores["persistence"]) == {"mae", "rmse", "mape", "r2", "directional_accuracy"}
        assert scores["days"] == data["splits"][part]["targets"]
    assert meta["parity"]["max_abs_diff"] <= meta["parity"]["tolerance"]
    assert meta["parity"]["windows_source"] == "real"
    assert meta["training"]["config"]["lstm_units"] == [16, 8] and meta["training"]["quick"] is True
    assert {"tensorflow", "tf2onnx", "onnxruntime", "keras"} <= set(meta["tools"])
    report = (out / "report" / "README.md").read_text()
    assert "training part only" in report and "persistence" in report
    for figure in ("eda_returns.png", "eda_volatility.png", "eda_seasonality.png", "eda_acf_pacf.png", "test_predictions.png"):
        assert (out / "report" / figure).stat().st_size > 1000


@pytest.mark.slow
def test_evaluate_replays_the_recorded_scores_through_the_onnx_engine(quick_bundle: tuple[Path, Path], tmp_path: Path) -> None:
    out, prices = quick_bundle
    done = run("evaluate", str(out), "--csv", str(prices), "--report", str(tmp_path / "report"), "--candidate", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    recorded = json.loads((out / "metadata.json").read_text())["metrics"]
    test = recorded["test"]
    assert f"| test | {test['days']} | MAE | {test['model']['mae']:.4f} | {test['persistence']['mae']:.4f} |" in done.stdout
    beats = test["model"]["mape"] < test["persistence"]["mape"]
    assert ("does NOT beat the persistence baseline" in done.stdout) is not beats
    report = (tmp_path / "report" / "README.md").read_text()
    assert "## Model selection (validation split only)" in report and RULE in report
    rows = [line for line in report.splitlines() if line.startswith("| **bundle** (shipped) | 16,8 | 8 |")]
    assert len(rows) == 1 and float(rows[0].rsplit("|", 2)[1]) > 0  # its measured batch-1 latency, in ms
    assert "The rule picks" in report


def _candidate(name: str, mape: float, latency_ms: float, beats_on_mae: bool = True) -> Candidate:
    persistence = {"mae": 0.31, "rmse": 0.41, "mape": 1.93, "r2": 0.974}
    model = {"mae": 0.30 if beats_on_mae else 0.32, "rmse": 0.40, "mape": mape, "r2": 0.975}
    return Candidate(name, {"model": model, "persistence": persistence}, latency_ms)


def test_selection_breaks_a_validation_mape_tie_by_serving_cost_only() -> None:
    big, small = _candidate("big", 1.900, 0.5), _candidate("small", 1.900 + MAPE_TIE * 0.9, 0.1)
    assert choose([big, small]).name == "small"
    clearly_better = _candidate("big", 1.900 - MAPE_TIE * 1.1, 0.5)
    assert choose([clearly_better, _candidate("small", 1.900, 0.1)]).name == "big"
    # persistence must be beaten on all four validation metrics, however low the MAPE
    assert choose([_candidate("lowest", 1.8, 0.1, beats_on_mae=False), big]).name == "big"
    assert choose([_candidate("none", 1.8, 0.1, beats_on_mae=False)]) is None


def test_evaluate_asks_for_the_csv_a_bundle_was_trained_from(quick_bundle: tuple[Path, Path]) -> None:
    done = run("evaluate", str(quick_bundle[0]))
    assert done.returncode != 0
    assert "trained from csv:SYN.csv: pass --csv PATH" in done.stderr


def test_train_refuses_a_series_too_short_for_its_split(tmp_path: Path) -> None:
    prices = tmp_path / "SHORT.csv"
    write_random_walk(prices, 70)
    done = run("train", "--symbol", "SHORT", "--csv", str(prices), "--out", str(tmp_path / "b"), "--quick")
    assert done.returncode != 0
    assert "needs at least 88 daily closes" in done.stderr and "has only 70" in done.stderr
    assert not (tmp_path / "b").exists()


def test_persistence_head_requires_window_last() -> None:
    with pytest.raises(ValueError, match="needs normalisation 'window_last'"):
        ModelConfig(normalisation="window_first", head="persistence")


def test_persistence_head_trains_on_percent_returns() -> None:
    ratios = np.array([1.0, 1.02, 0.99])
    np.testing.assert_allclose(ModelConfig(normalisation="window_last", head="persistence").encode_targets(ratios), [0.0, 2.0, -1.0], atol=1e-5)
    np.testing.assert_array_equal(ModelConfig().encode_targets(ratios), ratios.astype(np.float32))


@pytest.mark.slow
def test_an_untrained_persistence_head_model_predicts_the_last_close_through_onnx(tmp_path: Path) -> None:
    from lstm_predictor.convert.keras_to_onnx import convert_model
    from lstm_predictor.training.model import build_model, serving_model

    config = ModelConfig(look_back=10, normalisation="window_last", head="persistence", lstm_units=(8, 4), dense_units=4)
    model = serving_model(build_model(config), config)
    bundle = convert_model(model, tmp_path / "b", symbol="X", normalisation="window_last")
    assert bundle.metadata["conversion"]["op_counts"]["LSTM"] == 2  # fused LSTM ops, no Loop
    windows = 30 * np.exp(np.cumsum(np.random.default_rng(2).normal(0, 0.02, (5, 10)), axis=1))
    np.testing.assert_allclose(Engine(bundle).predict(windows).prices, windows[:, -1], rtol=1e-6)
