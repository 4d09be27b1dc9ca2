"""The model and training settings, TensorFlow-free so that commands which only read them
(``evaluate``, the CLI's option parsing) start without importing Keras."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from lstm_predictor.daemon.windows import Rule, check_rule

PERCENT = 100.0
Head = Literal["free", "persistence"]


@dataclass(frozen=True)
class ModelConfig:
    look_back: int = 60
    normalisation: Rule = "window_first"
    lstm_units: tuple[int, ...] = (128, 64)
    dense_units: int = 32
    dropout: float = 0.25
    recurrent_dropout: float = 0.1
    l2: float = 5e-4
    batch_norm: bool = True
    head: Head = "free"
    learning_rate: float = 1e-3
    clipnorm: float = 1.0
    batch_size: int = 32
    epochs: int = 150
    patience: int = 15
    # The L2 penalty is part of Keras' val_loss and can outweigh the data term a
    # thousandfold for returns near 1.0; "val_huber" watches the data term alone.
    monitor: Literal["val_huber", "val_loss"] = "val_huber"
    seed: int = 42

    def __post_init__(self) -> None:
        check_rule(self.normalisation)
        if self.head == "persistence" and self.normalisation != "window_last":
            raise ValueError("head='persistence' needs normalisation 'window_last' (output 1.0 = the last close)")
        if self.look_back < 2 or not self.lstm_units or min(self.lstm_units) < 1:
            raise ValueError(f"invalid model sizes: look_back {self.look_back}, lstm_units {self.lstm_units}")

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["lstm_units"] = list(self.lstm_units)
        return out

    def encode_targets(self, ratios: np.ndarray) -> np.ndarray:
        """What the network is trained to output for window targets ``ratios`` (see training/model.py)."""
        if self.head == "persistence":
            return ((np.asarray(ratios, dtype=np.float64) - 1.0) * PERCENT).astype(np.float32)
        return np.asarray(ratios, dtype=np.float32)
