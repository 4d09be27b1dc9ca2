"""Reading the original FastAPI service's ``model_metadata.json`` into bundle metadata."""

from __future__ import annotations

from typing import Any

from .keras_model import ConversionError

_METRIC_KEYS = {"MAE": "mae", "RMSE": "rmse", "MAPE": "mape", "R2": "r2"}


def _rule_from_text(text: str) -> str:
    """The original describes its rule in words, e.g. "per-window (divide by first element of window)"."""
    lowered = text.lower()
    if "first" in lowered:
        return "window_first"
    if "last" in lowered:
        return "window_last"
    raise ConversionError(f"cannot tell the normalisation rule from {text!r}; pass --normalisation")


def metadata_from_seed(seed: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "symbol" in seed:
        out["symbol"] = seed["symbol"]
    if "look_back" in seed:
        out["look_back"] = int(seed["look_back"])
    if "normalization" in seed:
        out["normalisation"] = _rule_from_text(str(seed["normalization"]))
    if "start_date" in seed or "end_date" in seed:
        out["data"] = {
            "source": "yfinance",
            "period": {"start": seed.get("start_date"), "end": seed.get("end_date")},
            "splits": {k: seed[f"{k}_split"] for k in ("train", "val", "test") if f"{k}_split" in seed},
        }
    if "metrics_test" in seed:
        out["metrics"] = {
            "test": {
                "model": {_METRIC_KEYS.get(k, k.lower()): v for k, v in seed["metrics_test"].items()},
                "note": "published by the original service; no persistence baseline was recorded beside it",
            }
        }
    out["training"] = {
        k: seed[k]
        for k in ("architecture", "loss_function", "optimizer", "batch_size", "epochs_total", "epochs_trained", "tf_version")
        if k in seed
    }
    out["origin"] = {"converted_from": "original service metadata", "created_at": seed.get("created_at")}
    return out
