"""wlm: dynamic int8 quantization of an LSTM word language model, after the PyTorch tutorial."""
__version__ = "0.1.0"
