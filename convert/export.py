"""Keras -> ONNX with tf2onnx.

``tf2onnx.convert.from_keras`` fails on Keras 3 models (KeyError on
``keras_tensor_*``); tracing a ``tf.function`` with an explicit TensorSpec and
``from_function`` works, and is what Keras itself would trace for inference.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import keras
import tensorflow as tf
import tf2onnx

from .keras_model import ConversionError

INPUT_NAME = "prices_normalised"
OPSET = 17


@dataclass(frozen=True)
class ExportedGraph:
    input_name: str
    output_name: str
    op_counts: dict[str, int]


def export_onnx(model: keras.Model, look_back: int, path: Path) -> ExportedGraph:
    spec = (tf.TensorSpec((None, look_back, 1), tf.float32, name=INPUT_NAME),)

    @tf.function(input_signature=spec)
    def infer(x: tf.Tensor) -> tf.Tensor:
        return model(x, training=False)

    proto, _ = tf2onnx.convert.from_function(infer, input_signature=spec, opset=OPSET, output_path=str(path))
    ops = Counter(node.op_type for node in proto.graph.node)
    if ops.get("Loop") or not ops.get("LSTM"):
        raise ConversionError(
            f"the exported graph has {ops.get('LSTM', 0)} fused LSTM and {ops.get('Loop', 0)} Loop nodes; "
            "expected fused LSTM operators only (a Loop costs about 8x the latency)"
        )
    return ExportedGraph(
        input_name=proto.graph.input[0].name,
        output_name=proto.graph.output[0].name,
        op_counts=dict(sorted(ops.items())),
    )
