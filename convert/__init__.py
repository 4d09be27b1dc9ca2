"""Keras -> ONNX conversion with tf2onnx (the ``train`` extra)."""
