"""Fitting with fixed seeds, early stopping and learning-rate reduction on validation data only."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # train and export on the CPU (see convert/)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from lstm_predictor.daemon.windows import TrainingWindows  # noqa: E402

from .config import ModelConfig  # noqa: E402
from .model import build_model, serving_model  # noqa: E402


def make_reproducible(seed: int, threads: int) -> None:
    """Same seed, same data -> same model. ``threads`` caps TensorFlow's CPU use on a shared box."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # already initialised in this process (a second training run): the first setting holds


class EarlyStoppingFromStart(keras.callbacks.EarlyStopping):
    """Early stopping whose candidates include the untrained model.

    Keras only compares epochs with each other; a model that starts at the
    persistence baseline must also be allowed to keep its starting weights when
    no epoch beats them on validation.
    """

    def __init__(
        self, validation: tuple[np.ndarray, np.ndarray], batch_size: int, echo: Callable[[str], None], **kwargs
    ) -> None:
        super().__init__(restore_best_weights=True, **kwargs)
        self._validation = validation
        self._batch_size = batch_size
        self._echo = echo

    def on_train_begin(self, logs=None) -> None:
        super().on_train_begin(logs)
        self._set_monitor_op()
        scores = self.model.evaluate(*self._validation, batch_size=self._batch_size, verbose=0, return_dict=True)
        self.best = scores[self.monitor.removeprefix("val_")]
        self.best_weights = self.model.get_weights()
        self.best_epoch = -1  # reported as epoch 0: the starting weights
        self._echo(f"epoch   0 (starting weights)  {self.monitor} {self.best:.3e}")


class Progress(keras.callbacks.Callback):
    """One line per epoch through ``echo`` (click.echo in the CLI)."""

    def __init__(self, epochs: int, monitor: str, echo: Callable[[str], None]) -> None:
        super().__init__()
        self.epochs, self.monitor, self.echo = epochs, monitor, echo

    def on_epoch_begin(self, epoch, logs=None) -> None:
        self._t0 = time.monotonic()

    def on_epoch_end(self, epoch, logs=None) -> None:
        logs = logs or {}
        lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        self.echo(
            f"epoch {epoch + 1:>3}/{self.epochs}  loss {logs.get('loss', float('nan')):.3e}  "
            f"{self.monitor} {logs.get(self.monitor, float('nan')):.3e}  lr {lr:.1e}  "
            f"({time.monotonic() - self._t0:.1f} s)"
        )


@dataclass(frozen=True)
class FitResult:
    model: keras.Model
    epochs_run: int
    best_epoch: int  # 0 = the starting weights were kept
    best_score: float
    history: dict[str, list[float]]


def fit(
    config: ModelConfig,
    train: TrainingWindows,
    validation: TrainingWindows,
    *,
    threads: int = 1,
    echo: Callable[[str], None] = print,
) -> FitResult:
    make_reproducible(config.seed, threads)
    model = build_model(config)
    train_y, val_y = config.encode_targets(train.y), config.encode_targets(validation.y)
    stopper = EarlyStoppingFromStart(
        (validation.x, val_y), config.batch_size, echo, monitor=config.monitor, mode="min", patience=config.patience
    )
    callbacks = [
        stopper,
        keras.callbacks.ReduceLROnPlateau(
            monitor=config.monitor, mode="min", factor=0.5, patience=max(1, config.patience // 3), min_lr=1e-6
        ),
        Progress(config.epochs, config.monitor, echo),
    ]
    history = model.fit(
        train.x,
        train_y,
        validation_data=(validation.x, val_y),
        epochs=config.epochs,
        batch_size=config.batch_size,
        shuffle=True,
        callbacks=callbacks,
        verbose=0,
    )
    return FitResult(
        model=serving_model(model, config),
        epochs_run=len(history.history["loss"]),
        best_epoch=stopper.best_epoch + 1,
        best_score=float(stopper.best),
        history={k: [float(v) for v in vals] for k, vals in history.history.items()},
    )
