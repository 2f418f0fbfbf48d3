"""One colour per model and one per part, the same in every chart of the page.

Mid-tone colours that stand out on Gradio's light and dark backgrounds alike; they colour
marks only (bars, points, lines), never text, which always takes the theme's text colour.
"""
from __future__ import annotations

# every variant of wlm.variants.VARIANTS, in its order; a name not here gets a fallback colour
MODELS = {
    "fp32": "#8c8c8c",
    "qint8": "#f58518",
    "qint8-per-channel": "#e45756",
    "qint8-embedding-8bit": "#b279a2",
    "fp16": "#9d755d",
    "qint8-lstm-only": "#eeca3b",
    "qint8-linear-only": "#ff9da6",
    "qint8-mixed": "#54a24b",
    "lowbit-mixed": "#8c6bb1",
    "ort-fp32": "#72b7b2",
    "ort-int8": "#4c78a8",
    "ort-int8-per-channel": "#17becf",
    "ort-int4": "#bcbd22",
}

# the parts of the model, and where the time goes
PARTS = {
    "embedding": "#72b7b2",
    "LSTM": "#4c78a8",
    "lstm": "#4c78a8",
    "decoder": "#e45756",
    "log-softmax and loss": "#eeca3b",
    "rest of the forward": "#b279a2",
    "other nodes": "#9d755d",
    "session and copies": "#bab0ac",
}
PARTS.update({f"lstm.{k}": PARTS["lstm"] for k in range(8)})    # each LSTM layer: the LSTM's colour

# the roundings of the bit ladder (wlm.lowbit)
ROUNDINGS = {"rtn": "#e7298a", "mse": "#a6761d", "gptq": "#1b9e77"}


# the three SQNR measurements of the analysis
SQNR = {"weights": "#4c78a8", "part alone": "#f58518", "in the model": "#54a24b"}

# the part sizes' names (wlm.quantize's module keys) as the page names them
MODULE_LABELS = {"encoder": "embedding", "rnn": "LSTM", "decoder": "decoder"}
