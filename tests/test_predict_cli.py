"""``lstm-predictor predict``: one prediction offline, printed as the JSON of POST /predict."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from daemon_harness import write_prices

WINDOW = [round(20 + 0.1 * i, 2) for i in range(60)]


def predict(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lstm_predictor", "predict", *args],
                          capture_output=True, text=True, timeout=60)


def test_prices_give_the_same_fields_as_post_predict(tiny_bundle: Path) -> None:
    result = predict("--model", str(tiny_bundle), "--prices", ",".join(map(str, WINDOW)), "--last-date", "2024-02-09")
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["predicted_price"] == pytest.approx(float(np.mean(WINDOW)), abs=2e-4)
    assert body["last_known_price"] == WINDOW[-1] and body["reference_price"] == WINDOW[-1]
    assert body["prediction_for_date"] == "2024-02-14" and body["last_data_date"] == "2024-02-09"
    assert body["model_name"] == "TINY3.SA" and body["model_version"] == "1" and body["symbol"] == "TINY3.SA"
    assert {"predicted_ratio", "expected_change_pct", "inference_time_ms", "timestamp"} <= set(body)


def test_csv_uses_its_last_look_back_closes_and_its_last_date(tiny_bundle: Path, tmp_path: Path) -> None:
    csv = write_prices(tmp_path)
    closes = [float(line.split(",")[1]) for line in csv.read_text().splitlines()[1:]][-60:]
    body = json.loads(predict("--model", str(tiny_bundle), "--csv", str(csv)).stdout)
    assert body["predicted_price"] == pytest.approx(float(np.mean(closes)), abs=2e-4)
    assert body["last_data_date"] == "2024-02-09" and body["prediction_for_date"] == "2024-02-14"


@pytest.mark.parametrize(
    ("prices", "says"),
    [
        ("1,2,3", "expected exactly 60 prices"),
        (",".join(map(str, WINDOW[:4] + ["abc"] + WINDOW[5:])), "prices[4] is 'abc'"),
        (",".join(map(str, WINDOW[:4] + [-1.0] + WINDOW[5:])), "prices[4] is -1.0"),
        (",".join(map(str, WINDOW[:4] + ["nan"] + WINDOW[5:])), "prices[4] is nan: every price must be finite"),
    ],
)
def test_bad_prices_exit_1_naming_the_element(tiny_bundle: Path, prices: str, says: str) -> None:
    result = predict("--model", str(tiny_bundle), "--prices", prices)
    assert result.returncode == 1 and says in result.stderr and not result.stdout


def test_a_last_date_too_late_to_date_a_prediction_is_a_usage_error(tiny_bundle: Path) -> None:
    result = predict("--model", str(tiny_bundle), "--prices", ",".join(map(str, WINDOW)), "--last-date", "9999-12-31")
    assert result.returncode == 2 and "--last-date" in result.stderr and "Traceback" not in result.stderr


def test_exactly_one_of_prices_and_csv_is_required(tiny_bundle: Path) -> None:
    assert predict("--model", str(tiny_bundle)).returncode == 2
    assert predict("--model", str(tiny_bundle), "--prices", "1", "--csv", "x.csv").returncode == 2


def test_a_missing_bundle_or_csv_is_a_clear_error(tiny_bundle: Path, tmp_path: Path) -> None:
    result = predict("--model", str(tmp_path / "nope"), "--prices", "1")
    assert result.returncode == 1 and "not a directory" in result.stderr
    result = predict("--model", str(tiny_bundle), "--csv", str(tmp_path / "missing.csv"))
    assert result.returncode == 1 and "missing.csv" in result.stderr


def test_predict_does_not_import_tensorflow(tiny_bundle: Path) -> None:
    script = textwrap.dedent(f"""
        import sys
        from lstm_predictor.cli import main
        main(["predict", "--model", {str(tiny_bundle)!r}, "--prices", {",".join(map(str, WINDOW))!r}],
             standalone_mode=False)
        leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf2onnx", "pandas"))
        assert not leaked, leaked
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert '"predicted_price"' in result.stdout
