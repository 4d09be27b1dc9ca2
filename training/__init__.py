"""Data preparation, training and evaluation of the LSTM (the ``train`` extra)."""
