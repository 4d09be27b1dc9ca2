"""Configuration as the real daemon applies it: precedence across flag, environment and
config file, and the old service's MODEL_PATH / METADATA_PATH / LOOK_BACK."""

from __future__ import annotations

import json
from pathlib import Path

from daemon_harness import free_port, run_to_exit, write_prices
from tiny_bundle import make_tiny_bundle

WINDOW = [round(20 + 0.1 * i, 2) for i in range(60)]


def test_flag_beats_environment_beats_config_file(start_daemon, tmp_path: Path) -> None:
    for symbol in ("AAA3.SA", "BBB3.SA", "CCC3.SA"):
        make_tiny_bundle(tmp_path / "models" / symbol, symbol=symbol)
    write_prices(tmp_path / "prices", symbol="AAA3.SA")
    config = tmp_path / "config.toml"
    config.write_text(
        f'default_model = "AAA3.SA"\nmax_body_bytes = 2048\nmarket_data = "{tmp_path / "prices"}"\n', encoding="utf-8"
    )
    daemon = start_daemon(
        tmp_path / "models",
        args=["--config", str(config), "--default-model", "CCC3.SA"],
        env={"LSTM_PREDICTOR_DEFAULT_MODEL": "BBB3.SA", "LSTM_PREDICTOR_MAX_BODY_BYTES": "8192"},
    )
    # default_model: flag (CCC) over environment (BBB) over file (AAA).
    assert daemon.get("/").json()["default_model"] == "CCC3.SA"
    # max_body_bytes: environment (8192) over file (2048).
    padded = {"prices": WINDOW, "pad": "x" * 5000}
    assert daemon.post("/predict", padded).status == 200
    too_big = daemon.post("/predict", {"prices": WINDOW, "pad": "x" * 9000})
    assert too_big.status == 413 and "8192" in too_big.json()["error"]["message"]
    # market_data: file over the default (yfinance, unreachable here).
    live = daemon.post("/predict/live", {"symbol": "AAA3.SA"})
    assert live.status == 200 and live.json()["data"]["source"].endswith("AAA3.SA.csv")


def test_legacy_model_path_metadata_path_and_look_back_keep_working(start_daemon, tiny_bundle: Path,
                                                                     tmp_path: Path) -> None:
    old_metadata = tmp_path / "model_metadata.json"  # the shape the old service shipped
    old_metadata.write_text(json.dumps({"symbol": "TINY3.SA", "look_back": 60, "epochs_total": 150}), encoding="utf-8")
    make_tiny_bundle(tiny_bundle.parent / "OTHER3.SA", symbol="OTHER3.SA")  # beside it, not served
    daemon = start_daemon(None, env={
        "MODEL_PATH": str(tiny_bundle / "model.onnx"), "METADATA_PATH": str(old_metadata), "LOOK_BACK": "60",
    })
    assert daemon.get("/").json()["models"] == ["TINY3.SA"]
    assert daemon.post("/predict", {"prices": WINDOW}).json()["symbol"] == "TINY3.SA"


def test_legacy_look_back_that_disagrees_with_the_bundle_stops_the_start(tiny_bundle: Path) -> None:
    result = run_to_exit(["--port", str(free_port())], env={"MODEL_PATH": str(tiny_bundle), "LOOK_BACK": "30"})
    assert result.returncode == 1
    assert "look_back is 60, but LOOK_BACK/METADATA_PATH expects 30" in result.stderr


def test_legacy_model_path_to_a_keras_file_says_to_convert_it(tmp_path: Path) -> None:
    keras = tmp_path / "lstm_petr4_final.keras"
    keras.write_bytes(b"PK")
    result = run_to_exit(["--port", str(free_port())], env={"MODEL_PATH": str(keras)})
    assert result.returncode == 2
    assert "lstm-predictor convert" in result.stderr and str(keras) in result.stderr


def test_int8_falls_back_to_fp32_for_a_bundle_without_a_gated_int8_model(start_daemon, models_dir: Path) -> None:
    daemon = start_daemon(models_dir, args=["--variant", "int8"])
    assert daemon.get("/health").json()["models"]["TINY3.SA"]["variant"] == "fp32"
    assert "no int8 variant that passed its accuracy gate; serving fp32" in daemon.stderr
