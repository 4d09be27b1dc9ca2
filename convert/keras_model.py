"""Loading a Keras model for export, and making its inference-only twin.

A Keras 3 LSTM with ``recurrent_dropout > 0`` cannot use the fused kernel, so
tf2onnx exports it as an ONNX ``Loop`` (about 8x slower at batch 1).
Recurrent dropout does nothing at inference, so a copy rebuilt from the same
config with ``recurrent_dropout = 0`` and the same weights answers identically
and exports as the fused ONNX ``LSTM`` operator.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Export on CPU: on a GPU Keras may pick CudnnRNNV3, which tf2onnx cannot convert.
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import keras  # noqa: E402


class ConversionError(Exception):
    """The model cannot be converted; the message says what to do about it."""


def load_keras_model(path: str | Path) -> keras.Model:
    path = Path(path)
    if not path.exists():
        raise ConversionError(f"{path}: no such file")
    if path.is_dir() or not (path.suffix in {".keras", ".h5", ".hdf5"} or zipfile.is_zipfile(path)):
        raise ConversionError(f"{path}: not a Keras model file (expected a .keras archive or a legacy .h5 file)")
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many unrelated types for a bad archive
        raise ConversionError(f"{path}: not a loadable Keras model ({type(exc).__name__}: {exc})") from exc


def look_back_of(model: keras.Model) -> int:
    """The window length, after checking the input is ``[batch, look_back, 1]``."""
    shape = tuple(model.inputs[0].shape) if model.inputs else None
    if shape is None or len(shape) != 3 or shape[2] != 1 or not isinstance(shape[1], int):
        raise ConversionError(
            f"model input shape is {list(shape) if shape else 'unknown'}; "
            "expected [batch, look_back, 1] (one price per time step)"
        )
    if len(model.outputs) != 1 or tuple(model.outputs[0].shape)[1:] != (1,):
        raise ConversionError(f"model output shape is {[list(o.shape) for o in model.outputs]}; expected [batch, 1]")
    return shape[1]


def _zero_recurrent_dropout(config: Any) -> int:
    """Set every ``recurrent_dropout`` in a (nested) layer config to 0; return how many were changed."""
    changed = 0
    if isinstance(config, dict):
        if config.get("recurrent_dropout"):
            config["recurrent_dropout"] = 0.0
            changed += 1
        for value in config.values():
            changed += _zero_recurrent_dropout(value)
    elif isinstance(config, list):
        for value in config:
            changed += _zero_recurrent_dropout(value)
    return changed


def inference_twin(model: keras.Model) -> tuple[keras.Model, int]:
    """The same model with recurrent dropout removed, and how many layers had it."""
    config = model.get_config()
    changed = _zero_recurrent_dropout(config)
    if not changed:
        return model, 0
    twin = model.__class__.from_config(config)
    twin.set_weights(model.get_weights())
    return twin, changed
