"""The tutorial's LSTM language model: embedding -> LSTM -> linear decoder."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn


@dataclass
class ModelConfig:
    ntoken: int
    ninp: int = 512       # embedding size
    nhid: int = 256       # LSTM hidden size
    nlayers: int = 5
    dropout: float = 0.5

    def __post_init__(self):
        for name in ("ntoken", "ninp", "nhid", "nlayers"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"ModelConfig.{name} must be a positive integer, got {v!r}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"ModelConfig.dropout must be in [0, 1), got {self.dropout!r}")

    def to_dict(self) -> dict:
        return asdict(self)


class LSTMModel(nn.Module):
    """Container module with an encoder, a recurrent module, and a decoder.

    Module names (encoder, rnn, decoder, drop) match the tutorial, so a state_dict
    loads into its class unchanged.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.drop = nn.Dropout(config.dropout)
        self.encoder = nn.Embedding(config.ntoken, config.ninp)
        self.rnn = nn.LSTM(config.ninp, config.nhid, config.nlayers, dropout=config.dropout)
        self.decoder = nn.Linear(config.nhid, config.ntoken)
        self.init_weights()

    def init_weights(self) -> None:
        initrange = 0.1
        self.encoder.weight.data.uniform_(-initrange, initrange)
        self.decoder.bias.data.zero_()
        self.decoder.weight.data.uniform_(-initrange, initrange)

    def forward(self, ids: torch.Tensor, hidden):
        # ids (T, B) -> emb (T, B, ninp) -> output (T, B, nhid) -> logits (T, B, ntoken)
        output, hidden = self.features(ids, hidden)
        return self.decoder(output), hidden

    def features(self, ids: torch.Tensor, hidden):
        """(the decoder's input (T, B, nhid), hidden): the forward up to the decoder."""
        emb = self.drop(self.encoder(ids))
        output, hidden = self.rnn(emb, hidden)
        return self.drop(output), hidden

    def init_hidden(self, bsz: int):
        """Zero (h, c), each (nlayers, bsz, nhid), on the device and dtype of the weights (a fully
        quantized copy has no float parameters left: then fp32 on the CPU)."""
        weight = next(self.parameters(), None)
        kw = {"dtype": weight.dtype, "device": weight.device} if weight is not None else {}
        c = self.config
        return (torch.zeros(c.nlayers, bsz, c.nhid, **kw),
                torch.zeros(c.nlayers, bsz, c.nhid, **kw))


def part_names(nlayers: int) -> list[str]:
    """The parts a quantization recipe names: the embedding, each LSTM layer, the decoder."""
    return ["embedding", *[f"lstm.{k}" for k in range(nlayers)], "decoder"]


def detach_hidden(h):
    """Cut the hidden state from its history (truncated backprop through time)."""
    if isinstance(h, torch.Tensor):
        return h.detach()
    return tuple(detach_hidden(v) for v in h)
