"""A real bundle with a tiny ONNX graph, made without TensorFlow or ../shared.

The graph answers the mean of the normalised window, so its predictions are
easy to compute by hand: with ``window_last`` the predicted price is the mean of
the window. It is a real ONNX model run by the real engine; only the network
is trivial.
"""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, helper

from lstm_predictor.daemon.bundle import MODEL_FILE, write_metadata

INPUT, OUTPUT = "prices_normalised", "ratio"


def tiny_graph(look_back: int) -> onnx.ModelProto:
    node = helper.make_node("ReduceMean", [INPUT], [OUTPUT], axes=[1], keepdims=0)
    graph = helper.make_graph(
        [node],
        "window_mean",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["batch", look_back, 1])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", 1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def make_tiny_bundle(
    directory: Path, symbol: str = "TINY3.SA", look_back: int = 60, rule: str = "window_last", version: str = "1"
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    onnx.save(tiny_graph(look_back), str(directory / MODEL_FILE))
    write_metadata(
        directory,
        {
            "name": directory.name,
            "version": version,
            "symbol": symbol,
            "look_back": look_back,
            "normalisation": rule,
            "input": {"name": INPUT, "shape": [None, look_back, 1]},
            "output": {"name": OUTPUT, "shape": [None, 1]},
            "kserve": {"input": "raw_prices", "output": "predicted_price"},
        },
    )
    return directory
