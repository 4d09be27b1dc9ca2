"""Keras model -> ONNX model bundle, with the parity proof recorded in its metadata."""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Mapping

import keras
import numpy as np
import onnxruntime as ort

from lstm_predictor.daemon.bundle import INT8_FILE, KERAS_FILE, MODEL_FILE, Bundle, read_bundle, write_metadata
from lstm_predictor.daemon.engine import Engine, session_options
from lstm_predictor.daemon.windows import check_rule, denormalise, normalise

from .export import OPSET, export_onnx
from .keras_model import ConversionError, inference_twin, look_back_of
from .parity import PARITY_TOLERANCE, generated_windows, max_abs_diff
from .quantize import accuracy_gate, quantize

GENERATED_PARITY_WINDOWS = 256
# Fields the converter derives from the graph itself; extra metadata may not override them.
_DERIVED = {"format_version", "look_back", "normalisation", "input", "output", "files", "parity", "conversion"}


def tool_versions() -> dict[str, str]:
    out = {}
    for dist in ("tensorflow-cpu", "tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "numpy"):
        try:
            out[dist.replace("-cpu", "")] = version(dist)
        except PackageNotFoundError:
            continue
    return out


def convert_model(
    model: keras.Model,
    out_dir: str | Path,
    *,
    symbol: str,
    normalisation: str,
    extra_metadata: Mapping[str, Any] | None = None,
    parity_windows: np.ndarray | None = None,
    gate_targets: np.ndarray | None = None,
    int8: bool = False,
    name: str | None = None,
    model_version: str | None = None,
    overwrite: bool = False,
) -> Bundle:
    """Write a complete bundle for ``model`` into ``out_dir`` and return it, read back and checked.

    ``parity_windows`` are raw price windows ``(n, look_back)`` (real data where
    available); ``gate_targets`` their known next closes, which the int8
    accuracy gate needs. The bundle is built in a temporary folder and moved
    into place only once parity holds, so a failed conversion leaves nothing
    that a daemon could pick up.
    """
    out_dir = Path(out_dir)
    rule = check_rule(normalisation)
    look_back = look_back_of(model)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise ConversionError(f"{out_dir} exists and is not empty; pass --force to replace it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    twin, dropout_layers = inference_twin(model)
    windows = parity_windows if parity_windows is not None else generated_windows(GENERATED_PARITY_WINDOWS, look_back)
    windows = np.asarray(windows, dtype=np.float64)
    if windows.ndim != 2 or windows.shape[1] != look_back:
        raise ConversionError(f"parity windows have shape {windows.shape}; expected (n, {look_back})")

    with tempfile.TemporaryDirectory(prefix=f".{out_dir.name}.", dir=out_dir.parent) as tmp:
        work = Path(tmp)
        graph = export_onnx(twin, look_back, work / MODEL_FILE)
        model.save(work / KERAS_FILE)
        created = dt.datetime.now(dt.timezone.utc)
        metadata: dict[str, Any] = {
            "name": name or out_dir.name,
            "version": model_version or created.strftime("%Y.%m.%d-%H%M%S"),
            "symbol": symbol,
            "look_back": look_back,
            "normalisation": rule,
            "input": {"name": graph.input_name, "shape": [None, look_back, 1]},
            "output": {"name": graph.output_name, "shape": [None, 1]},
            "kserve": {"input": "raw_prices", "output": "predicted_price"},
            "created_at": created.isoformat(timespec="seconds"),
            "tools": tool_versions(),
            **{k: v for k, v in (extra_metadata or {}).items() if k not in _DERIVED},
            "conversion": {
                "opset": OPSET,
                "op_counts": graph.op_counts,
                "recurrent_dropout_removed_from_layers": dropout_layers,
            },
        }
        write_metadata(work, metadata)
        engine = Engine(read_bundle(work))

        x, refs = normalise(windows, rule)
        keras_ratios = np.asarray(model.predict(x, batch_size=256, verbose=0), dtype=np.float64).reshape(-1)
        onnx_ratios = engine.run_normalised(x).astype(np.float64)
        diff = max_abs_diff(keras_ratios, onnx_ratios)
        metadata["parity"] = {
            "max_abs_diff": diff,
            "windows": int(len(windows)),
            "windows_source": "generated" if parity_windows is None else "real",
            "tolerance": PARITY_TOLERANCE,
        }
        if not diff <= PARITY_TOLERANCE:  # also catches NaN
            raise ConversionError(
                f"parity check failed: ONNX and Keras differ by up to {diff:.3g} on {len(windows)} windows "
                f"(tolerance {PARITY_TOLERANCE:g})"
            )

        files: dict[str, Any] = {}
        if int8:
            quantize(work / MODEL_FILE, work / INT8_FILE)
            session = ort.InferenceSession(str(work / INT8_FILE), session_options(), providers=["CPUExecutionProvider"])
            int8_ratios = session.run(None, {graph.input_name: x})[0].astype(np.float64).reshape(-1)
            files[INT8_FILE] = {
                "max_abs_error_vs_fp32": max_abs_diff(int8_ratios, onnx_ratios),
                "accuracy_gate": accuracy_gate(
                    denormalise(onnx_ratios, refs), denormalise(int8_ratios, refs), gate_targets
                ),
            }
        metadata["files"] = files
        write_metadata(work, metadata)
        read_bundle(work)  # the final folder must read back cleanly before it replaces anything

        if out_dir.exists():
            shutil.rmtree(out_dir)
        work.rename(out_dir)
        out_dir.chmod(0o755)  # mkdtemp made it private; a service user must be able to read it
        work.mkdir()  # TemporaryDirectory cleans up the path it created
    return read_bundle(out_dir)
