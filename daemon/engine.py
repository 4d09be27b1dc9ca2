"""The ONNX engine: one onnxruntime session per bundle, tuned for tail latency on a small CPU.

Measured on a 2-core box: one intra-op thread with spinning off gives the best
p99; more threads with spinning gave 4-8 ms spikes. Batching is what buys
throughput, so the session stays single-threaded and the daemon coalesces
concurrent requests into one run instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .bundle import Bundle, BundleError
from .windows import denormalise, normalise


def session_options() -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return opts


@dataclass(frozen=True)
class Prediction:
    """Per-window results, float64: ``prices = ratios * refs``."""

    prices: np.ndarray
    ratios: np.ndarray
    refs: np.ndarray


class Engine:
    """Runs a bundle's graph on batches of raw price windows. Thread-safe: onnxruntime's
    ``InferenceSession.run`` may be called concurrently, and this class holds no other state."""

    def __init__(self, bundle: Bundle, variant: str = "fp32") -> None:
        self.bundle = bundle
        if variant == "int8":
            model_file = bundle.int8_file
            if model_file is None:
                raise BundleError(f"bundle {bundle.path}: no int8 variant that passed its accuracy gate")
        elif variant == "fp32":
            model_file = bundle.model_file
        else:
            raise ValueError(f"unknown model variant {variant!r}; expected 'fp32' or 'int8'")
        self.variant = variant
        self.session = _open_session(model_file, bundle)
        self._input = bundle.input.name
        self._outputs = [bundle.output.name]

    @property
    def look_back(self) -> int:
        return self.bundle.look_back

    def run_normalised(self, x: np.ndarray) -> np.ndarray:
        """Model input ``(n, look_back, 1)`` float32 -> ratios ``(n,)`` float32."""
        return self.session.run(self._outputs, {self._input: x})[0].reshape(-1)

    def predict(self, windows: np.ndarray) -> Prediction:
        """Raw price windows ``(n, look_back)`` -> predicted next closes."""
        x, refs = normalise(windows, self.bundle.normalisation)
        ratios = self.run_normalised(x).astype(np.float64)
        return Prediction(prices=denormalise(ratios, refs), ratios=ratios, refs=refs)

    def warm_up(self) -> None:
        """A batched inference on flat windows, so the first real request pays no lazy
        initialisation, and a graph that loads but cannot serve is refused (BundleError)
        before any request reaches it: one that fails to run, or that answers other than
        one finite value per window (its declared output shape is only a claim)."""
        windows = 2  # more than one: a graph that ignores the batch dimension shows here
        x, _ = normalise(np.ones((windows, self.look_back)), self.bundle.normalisation)
        where = f"bundle {self.bundle.path}"
        try:
            ratios = self.run_normalised(x)
        except Exception as exc:  # onnxruntime's errors are untyped
            raise BundleError(f"{where}: the warm-up inference failed ({exc})") from exc
        if ratios.shape != (windows,) or not np.isfinite(ratios).all():
            raise BundleError(
                f"{where}: the warm-up inference answered {ratios.size} value(s) {ratios.tolist()[:4]} "
                f"for {windows} windows; expected one finite value per window"
            )


def _open_session(model_file: Path, bundle: Bundle) -> ort.InferenceSession:
    where = f"bundle {bundle.path}: {model_file.name}"
    try:
        session = ort.InferenceSession(str(model_file), session_options(), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped exceptions for bad graphs
        raise BundleError(f"{where} is not a loadable ONNX model ({exc})") from exc
    _check_tensor(where, "input", session.get_inputs(), bundle.input.name, bundle.input.shape)
    _check_tensor(where, "output", session.get_outputs(), bundle.output.name, bundle.output.shape)
    return session


def _check_tensor(where: str, kind: str, args: list, name: str, shape: tuple[int | None, ...]) -> None:
    if len(args) != 1:
        raise BundleError(f"{where}: the graph has {len(args)} {kind}s, expected exactly 1")
    arg = args[0]
    if arg.name != name:
        raise BundleError(f"{where}: the graph's {kind} is named {arg.name!r}, metadata.json says {name!r}")
    # Symbolic dimensions (strings such as 'unk__12') and None are both a free batch size.
    graph_shape = tuple(d if isinstance(d, int) else None for d in arg.shape)
    if graph_shape != tuple(shape):
        raise BundleError(
            f"{where}: the graph's {kind} shape {list(graph_shape)} disagrees with metadata.json {list(shape)}"
        )
