"""The LSTM, described by one config whose defaults are the original PETR4 model.

``head="persistence"`` (with ``window_last`` inputs) trains the network on the
next close's return over the last close, in percent, from a zero-initialised
last layer: the untrained model answers "tomorrow's close = today's close"
exactly, and training only moves it away from that baseline as far as the data
supports. Percent units keep the original's Huber delta (1.0) and L2 strength
meaningful: on raw ratios near 1.0 the errors are a hundred times smaller and
the L2 penalty wins outright, collapsing the network to a constant. For
serving, a frozen Dense layer maps the percent back to the ratio the bundle
contract expects (``1 + pct / 100``). Everything stays a plain stack of
LSTM/Dropout/BatchNorm/Dense layers, which the converter exports as fused ONNX
LSTM operators.
"""

from __future__ import annotations

import keras
import numpy as np

from .config import PERCENT, ModelConfig


def build_model(config: ModelConfig) -> keras.Model:
    """The trainable network: LSTM(128, seq) -> Dropout -> LSTM(64) -> BatchNorm -> Dropout -> Dense(32, relu) -> Dense(1) by default."""
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
        layers.append(keras.layers.Dense(1, kernel_initializer="zeros", name="return_pct"))
    else:
        layers.append(keras.layers.Dense(1, name="ratio"))
    model = keras.Sequential(layers, name="lstm_predictor")
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate, clipnorm=config.clipnorm),
        loss=keras.losses.Huber(),
        metrics=[keras.metrics.MeanMetricWrapper(keras.losses.huber, name="huber")],
    )
    return model


def serving_model(trained: keras.Model, config: ModelConfig) -> keras.Model:
    """The model a bundle ships: its output is the next close divided by the window's reference."""
    if config.head != "persistence":
        return trained
    to_ratio = keras.layers.Dense(1, trainable=False, name="ratio")
    model = keras.Sequential([keras.Input((config.look_back, 1), name="prices"), *trained.layers, to_ratio], name="lstm_predictor")
    to_ratio.set_weights([np.array([[1.0 / PERCENT]], dtype="float32"), np.array([1.0], dtype="float32")])
    return model
