"""Specification of ``lstm-predictor convert``: Keras in, a bundle that serves the same answers out."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow
keras = pytest.importorskip("keras")
onnx = pytest.importorskip("onnx")

from lstm_predictor.convert.keras_model import ConversionError, load_keras_model  # noqa: E402
from lstm_predictor.convert.keras_to_onnx import convert_model  # noqa: E402
from lstm_predictor.daemon.bundle import read_bundle  # noqa: E402
from lstm_predictor.daemon.engine import Engine  # noqa: E402


def small_lstm(recurrent_dropout: float, look_back: int = 20) -> "keras.Model":
    keras.utils.set_random_seed(7)
    return keras.Sequential(
        [
            keras.Input((look_back, 1)),
            keras.layers.LSTM(8, return_sequences=True, recurrent_dropout=recurrent_dropout),
            keras.layers.LSTM(4, recurrent_dropout=recurrent_dropout),
            keras.layers.Dense(1),
        ]
    )


def graph_ops(bundle_dir: Path) -> Counter:
    return Counter(node.op_type for node in onnx.load(str(bundle_dir / "model.onnx")).graph.node)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lstm_predictor", *args], capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize("recurrent_dropout", [0.0, 0.2])
def test_small_lstm_exports_fused_lstm_ops_with_parity(tmp_path: Path, recurrent_dropout: float) -> None:
    bundle = convert_model(small_lstm(recurrent_dropout), tmp_path / "SYN", symbol="SYN", normalisation="window_last")
    ops = graph_ops(bundle.path)
    assert ops["LSTM"] == 2 and ops["Loop"] == 0
    assert bundle.metadata["parity"]["max_abs_diff"] < 1e-5
    assert bundle.metadata["conversion"]["recurrent_dropout_removed_from_layers"] == (2 if recurrent_dropout else 0)
    # The served graph answers what the recorded parity says: check it independently.
    windows = np.exp(np.cumsum(np.random.default_rng(1).normal(0, 0.02, (16, 20)), axis=1)) * 20
    from lstm_predictor.daemon.windows import normalise

    x, _ = normalise(windows, "window_last")
    expected = small_lstm(recurrent_dropout).predict(x, verbose=0).reshape(-1)
    got = Engine(read_bundle(bundle.path)).run_normalised(x)
    assert np.max(np.abs(expected - got)) < 1e-5


def test_failed_conversion_leaves_no_bundle_behind(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "something").write_text("x")
    with pytest.raises(ConversionError, match="not empty"):
        convert_model(small_lstm(0.0), tmp_path / "taken", symbol="SYN", normalisation="window_last")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_int8_variant_records_error_and_closed_gate_without_real_data(tmp_path: Path) -> None:
    bundle = convert_model(small_lstm(0.0), tmp_path / "SYN", symbol="SYN", normalisation="window_last", int8=True)
    info = bundle.metadata["files"]["model.int8.onnx"]
    assert info["max_abs_error_vs_fp32"] > 0
    assert info["accuracy_gate"]["passed"] is False
    assert bundle.int8_file is None  # the daemon will not serve an ungated variant
    assert graph_ops(bundle.path)["LSTM"] == 2


def test_original_model_converts_with_parity_and_its_known_answer(seed_bundle: Path) -> None:
    bundle = read_bundle(seed_bundle)
    assert graph_ops(seed_bundle)["LSTM"] == 2 and graph_ops(seed_bundle)["Loop"] == 0
    assert bundle.metadata["parity"]["max_abs_diff"] < 1e-5
    prediction = Engine(bundle).predict(np.linspace(34, 38, 60)[None, :])
    # The original FastAPI service answered 38.0809 (ratio 1.1200) for this window; Keras 3.15
    # on this machine gives 38.0819, and the ONNX graph matches Keras to 1e-5 (asserted above).
    assert round(float(prediction.prices[0]), 2) == 38.08
    assert float(prediction.ratios[0]) == pytest.approx(1.1200, abs=1e-4)


def test_cli_carries_over_original_metadata_and_gates_int8_on_real_data(
    seed_keras_file: Path, shared_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "bundle"
    result = run_cli(
        "convert", str(seed_keras_file), "--out", str(out),
        "--metadata", str(shared_dir / "seed-model" / "model_metadata.json"),
        "--csv", str(shared_dir / "data" / "PETR4.SA.csv"), "--int8",
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    meta = read_bundle(out).metadata
    assert meta["symbol"] == "PETR4.SA" and meta["normalisation"] == "window_first"
    assert meta["metrics"]["test"]["model"]["mape"] == pytest.approx(1.831505)
    assert meta["parity"]["windows_source"] == "real" and meta["parity"]["max_abs_diff"] < 1e-5
    gate = meta["files"]["model.int8.onnx"]["accuracy_gate"]
    assert {"passed", "fp32", "int8", "tolerance"} <= gate.keys()
    assert summary["op_counts"]["LSTM"] == 2


@pytest.mark.parametrize(
    "make_input, message",
    [
        (lambda d: d / "missing.keras", "no such file"),
        (lambda d: (d / "notes.keras").write_text("not a model") and d / "notes.keras", "not a"),
    ],
)
def test_cli_refuses_what_is_not_a_keras_model(tmp_path: Path, make_input, message: str) -> None:
    result = run_cli("convert", str(make_input(tmp_path)), "--out", str(tmp_path / "out"))
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_cli_refuses_a_model_whose_input_is_not_one_price_per_step(tmp_path: Path) -> None:
    model = keras.Sequential([keras.Input((60, 3)), keras.layers.LSTM(4), keras.layers.Dense(1)])
    model.save(tmp_path / "multi.keras")
    result = run_cli("convert", str(tmp_path / "multi.keras"), "--out", str(tmp_path / "out"))
    assert result.returncode != 0
    assert "expected [batch, look_back, 1]" in result.stderr and "Traceback" not in result.stderr


def test_load_refuses_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match="not a Keras model file"):
        load_keras_model(tmp_path)
