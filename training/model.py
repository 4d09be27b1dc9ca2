"""The LSTM, described by one config whose defaults are the original PETR4 model.

``head="persistence"`` (with ``window_last`` inputs) zero-initialises the last
Dense layer's kernel and sets its bias to 1.0: the untrained model answers
"tomorrow's close = today's close" exactly, and training can only move it away
from that baseline by learning a correction the validation data supports.
It stays a plain stack of LSTM/Dropout/BatchNorm/Dense layers, which the
converter exports as fused ONNX LSTM operators.
"""

from __future__ import annotations

import keras

from .config import ModelConfig


def build_model(config: ModelConfig) -> keras.Model:
    """LSTM(128, seq) -> Dropout -> LSTM(64) -> BatchNorm -> Dropout -> Dense(32, relu) -> Dense(1) by default."""
    reg = keras.regularizers.l2(config.l2) if config.l2 else None
    layers: list[keras.layers.Layer] = [keras.Input((config.look_back, 1), name="prices")]
    for i, units in enumerate(config.lstm_units):
        last = i == len(config.lstm_units) - 1
        layers.append(
            keras.layers.LSTM(
                units,
                return_sequences=not last,
                recurrent_dropout=config.recurrent_dropout,
                kernel_regularizer=reg,
                recurrent_regularizer=reg,
                name=f"lstm_{i + 1}",
            )
        )
        if not last and config.dropout:
            layers.append(keras.layers.Dropout(config.dropout, name=f"dropout_{i + 1}"))
    if config.batch_norm:
        layers.append(keras.layers.BatchNormalization(name="batch_norm"))
    if config.dropout:
        layers.append(keras.layers.Dropout(config.dropout, name="dropout_head"))
    if config.dense_units:
        layers.append(keras.layers.Dense(config.dense_units, activation="relu", kernel_regularizer=reg, name="dense"))
    if config.head == "persistence":
        out = keras.layers.Dense(1, kernel_initializer="zeros", bias_initializer=keras.initializers.Constant(1.0), name="ratio")
    else:
        out = keras.layers.Dense(1, name="ratio")
    layers.append(out)
    model = keras.Sequential(layers, name="lstm_predictor")
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate, clipnorm=config.clipnorm),
        loss=keras.losses.Huber(),
        metrics=[keras.metrics.MeanMetricWrapper(keras.losses.huber, name="huber")],
    )
    return model
