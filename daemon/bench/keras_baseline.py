"""The baseline: the original Keras model answering the same windows as the service it
replaces did, one ``model.predict(x)`` of batch 1 per request, in a process of its own.

Run by ``lstm-predictor bench --baseline keras`` as a child process
(``python -m lstm_predictor.daemon.bench.keras_baseline``): TensorFlow is
imported only there, never into the bench process or the daemon, and the
child's memory and start time are measured like the daemon's. Needs the
``train`` extra. The timings leave out HTTP, so they flatter Keras.

Protocol on stdout: ``READY`` once the model is loaded and one prediction
ran, then one JSON line with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..windows import denormalise, normalise
from .loadgen import percentiles

RULE = "window_first"  # the original model's normalisation


def forecast(model: Any, window: np.ndarray, days: int) -> np.ndarray:  # model: a keras.Model, never imported here
    """``days`` closes, each fed back as the newest price, one predict per day."""
    window = window.copy()
    out = np.empty(days)
    for day in range(days):
        x, refs = normalise(window[None, :], RULE)
        out[day] = denormalise(model.predict(x, verbose=0), refs)[0]
        window = np.append(window[1:], out[day])
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="keras_baseline")
    parser.add_argument("model")
    parser.add_argument("windows", help=".npy file of raw price windows (n, look_back)")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--forecasts", type=int, default=5)
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras  # the train extra; imported here only

    windows = np.load(args.windows)
    model = keras.models.load_model(args.model, compile=False)
    inputs = [normalise(w[None, :], RULE)[0] for w in windows]
    model.predict(inputs[0], verbose=0)
    print("READY", flush=True)

    latencies = []
    started = time.perf_counter()
    for i in range(args.requests):
        t = time.perf_counter()
        model.predict(inputs[i % len(inputs)], verbose=0)
        latencies.append(time.perf_counter() - t)
    predict_seconds = time.perf_counter() - started

    forecast_latencies = []
    for i in range(args.forecasts):
        t = time.perf_counter()
        forecast(model, windows[i % len(windows)], args.days)
        forecast_latencies.append(time.perf_counter() - t)

    import psutil

    p50, p90, p99 = percentiles(latencies)
    f50, f90, f99 = percentiles(forecast_latencies)
    figures = {
        "keras": keras.__version__,
        "requests": args.requests,
        "rps": args.requests / predict_seconds,
        "p50": p50, "p90": p90, "p99": p99,
        "forecast_days": args.days, "forecasts": args.forecasts,
        "forecast_p50": f50, "forecast_p90": f90, "forecast_p99": f99,
        "rss_bytes": psutil.Process().memory_info().rss,
    }  # fmt: skip
    sys.stdout.write(json.dumps(figures) + "\n")


@dataclass(frozen=True)
class KerasResult:
    ready_seconds: float  # spawn to model loaded and one prediction done
    figures: dict[str, Any]


def run(model_file: Path, windows: np.ndarray, requests: int, forecasts: int, days: int) -> KerasResult:
    """Time the Keras model in a child process (the parent never imports TensorFlow)."""
    with tempfile.TemporaryDirectory(prefix="lstm-bench-keras-") as tmp:
        windows_file = Path(tmp) / "windows.npy"
        np.save(windows_file, windows)
        cmd = [sys.executable, "-m", __name__, str(model_file), str(windows_file),
               f"--requests={requests}", f"--forecasts={forecasts}", f"--days={days}"]  # fmt: skip
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        started = time.perf_counter()
        child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        assert child.stdout is not None
        ready_seconds = None
        lines = []
        for line in child.stdout:
            if line.strip() == "READY" and ready_seconds is None:
                ready_seconds = time.perf_counter() - started
            else:
                lines.append(line)
        stderr = child.stderr.read() if child.stderr else ""
        if child.wait() != 0 or ready_seconds is None or not lines:
            raise RuntimeError(f"the Keras baseline failed (exit {child.returncode}): {stderr.strip()[-2000:]}")
    return KerasResult(ready_seconds, json.loads(lines[-1]))


if __name__ == "__main__":
    main()
