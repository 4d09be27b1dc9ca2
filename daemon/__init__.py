"""The runtime: bundles, the ONNX engine and the HTTP daemon. Never imports TensorFlow."""
