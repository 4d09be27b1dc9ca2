"""lstm-predictor: a stock-forecasting LSTM trained in Keras and served from ONNX."""

__version__ = "0.1.0"
