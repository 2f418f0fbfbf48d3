"""The bit ladder: each part of the model, and all of them together, at 8 down to 2 bits, per row
and per group, by each rounding (``wlm.lowbit``), measured end to end against fp32.

A *rung* is one part at one precision and rounding, every other part fp32. For each rung, on
the same tokens as fp32: KL(fp32 || rung) per token, the loss change (paired), top-1 agreement,
each with its standard error by batch means (``wlm.stats``), and the bytes of its packed file
(``wlm.packed``: the whole model, that part packed).

How it is computed, and why it is exact: the weights are dequantized and the model runs in fp32,
so nothing depends on how the text is cut into calls (no activation is quantized): the text goes
in calls of ``call_tokens`` with every hidden state carried, which gives the tutorial's bptt-25
evaluation but for float rounding. Rungs are run in groups that enter the model at the same
part: fp32 runs each call once, keeping its input to every layer, and a rung on ``lstm.3`` starts
from fp32's input to lstm.3, a decoder rung from fp32's top output; the rungs of a group share
fp32's log-probabilities of each call. At most ``IN_FLIGHT`` rungs are held at once (each holds
its own dequantized part).

    >>> ladder = Ladder(ckpt.model, corpus.valid, rungs(ckpt.model.config), calibration.hessians)
    >>> while ladder.step(): pass
    >>> ladder.results()
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from . import stats
from .lowbit import BITS, Precision, Recipe, quantize_part
from .model import part_names

IN_FLIGHT = 6
DECODER = 1_000                  # the entry point of a decoder rung (after every layer)
CALL_TOKENS = 500
LADDER_GROUPS = (None, 32)
LADDER_ROUNDINGS = ("rtn", "mse", "gptq")


@dataclass(frozen=True)
class Rung:
    part: str                  # embedding, lstm.K, decoder, or "all"
    bits: int
    group: int | None          # None: one scale per row
    rounding: str

    @property
    def precision(self) -> Precision:
        return Precision(self.bits, self.group)

    @property
    def key(self) -> str:
        return f"{self.part} {self.precision.text} {self.rounding}"

    def recipe(self, nlayers: int) -> Recipe:
        return Recipe(tuple((n, self.precision if self.part in (n, "all") else Precision()) for n in part_names(nlayers)),
                      self.rounding)


def rungs(config, parts=None, bits=BITS, groups=LADDER_GROUPS, roundings=LADDER_ROUNDINGS) -> list[Rung]:
    """Every rung of ``parts`` (default: each part and ``all``); the embedding has no ``gptq`` rung
    (it is a lookup: gptq rounds it as mse does), so with ``gptq`` it gets its ``mse`` rungs."""
    parts = list(parts) if parts else [*part_names(config.nlayers), "all"]
    allowed = [*part_names(config.nlayers), "all"]
    bad = [p for p in parts if p not in allowed]
    if bad:
        raise ValueError(f"parts must be among {', '.join(allowed)}, got {', '.join(bad)}")
    emb = [r for r in roundings if r != "gptq"] + (["mse"] if "gptq" in roundings and "mse" not in roundings else [])
    return [Rung(p, b, g, r) for p in parts for r in (emb if p == "embedding" else roundings) for g in groups
            for b in bits]


@dataclass
class RungResult:
    part: str
    bits: int
    group: int | None
    rounding: str
    kl: float
    kl_se: float | None
    top1: float
    top1_se: float | None
    dloss: float
    dloss_se: float | None
    file_mb: float            # the packed file of the whole model with this rung (MB = 1e6 bytes)
    tokens: int

    def to_dict(self) -> dict:
        return asdict(self)


class _State:
    """One rung in flight: its part's weights (dequantized), its hidden state per layer, and its
    per-token figures."""

    def __init__(self, rung: Rung, fp32, split, quantized: dict, n: int):
        self.rung, self.quantized = rung, quantized
        w = {k: q.dequantize() for k, q in quantized.items()}
        self.encoder = w.get("encoder.weight")
        self.layers = []
        for k, layer in enumerate(split.rnn):
            ih, hh = w.get(f"rnn.weight_ih_l{k}"), w.get(f"rnn.weight_hh_l{k}")
            if ih is None and hh is None:
                self.layers.append(layer)
                continue
            new = torch.nn.LSTM(layer.input_size, layer.hidden_size, 1)
            for name in new._flat_weights_names:
                t = {"weight_ih_l0": ih, "weight_hh_l0": hh}.get(name)
                setattr(new, name, torch.nn.Parameter(t if t is not None else getattr(layer, name).detach(), False))
            self.layers.append(new.eval())
        self.decoder = w.get("decoder.weight", fp32.decoder.weight.detach())
        self.hidden = None
        self.kl = np.empty(n, np.float32)
        self.top1 = np.empty(n, np.bool_)
        self.dnll = np.empty(n, np.float32)


class Ladder:
    """fp32 and ``rungs`` over the first ``max_tokens`` of ``ids``; ``step()`` runs one call of
    one group of rungs, so a caller can report progress or share the CPU between steps.

    Args:
        model: the fp32 ``LSTMModel``.
        ids: a split, e.g. ``corpus.valid`` (1-D ids).
        hessians: ``wlm.gptq.Calibration.hessians``, needed by ``gptq`` rungs.
        vocab: the words, for the packed files whose bytes are counted.
    """

    def __init__(self, model, ids: torch.Tensor, rung_list: list[Rung], hessians=None, *,
                 max_tokens: int | None = None, call_tokens: int = CALL_TOKENS, vocab: list[str] | None = None,
                 in_flight: int = IN_FLIGHT):
        from .layerwise import SplitModel
        if max_tokens is not None:
            ids = ids[:max_tokens]
        if len(ids) < 2:
            raise ValueError(f"{len(ids)} tokens are too few for a ladder")
        self.model, self.ids, self.hessians, self.call_tokens = model.eval(), ids, hessians, call_tokens
        self.vocab = vocab or [str(i) for i in range(model.config.ntoken)]
        self.split = SplitModel(model).eval()
        self.n = len(ids) - 1                            # predicted tokens
        first, *rest = part_names(model.config.nlayers)
        order = {p: k for k, p in enumerate([first, "all", *rest])}
        todo = sorted(rung_list, key=lambda r: order[r.part])
        self.groups: list[list[Rung]] = []               # same entry point, at most in_flight each
        for r in todo:
            if self.groups and self._entry(self.groups[-1][0]) == self._entry(r) and len(self.groups[-1]) < in_flight:
                self.groups[-1].append(r)
            else:
                self.groups.append([r])
        self.group = 0                                  # the group in progress
        self.pos = 0                                    # its next token
        self.live: list[_State] = []
        self.results_: dict[Rung, RungResult] = {}
        self.fp32_nll = np.empty(self.n, np.float32)
        self.fp32_mb = self._file_mb({})
        self._fp32_hidden = None
        self.seconds = 0.0

    @staticmethod
    def _entry(rung: Rung) -> int:
        """Where a rung first differs from fp32: 0 the embedding, 1 + K layer K, ``DECODER``."""
        if rung.part in ("embedding", "all"):
            return 0
        if rung.part == "decoder":
            return DECODER
        return 1 + int(rung.part.split(".")[1])

    @property
    def done(self) -> bool:
        return self.group >= len(self.groups)

    @property
    def progress(self) -> tuple[int, int]:
        """(tokens done over all groups, tokens in all)."""
        return self.group * self.n + self.pos, len(self.groups) * self.n

    def _file_mb(self, quantized: dict) -> float:
        from .packed import file_size
        return file_size(self.model, self.vocab, "", quantized) / 1e6

    @torch.inference_mode()
    def step(self) -> bool:
        """One call of ``call_tokens`` for the group in progress; False once every rung is measured."""
        if self.done:
            return False
        t0 = time.perf_counter()
        group = self.groups[self.group]
        if self.pos == 0:
            self.live = []
            for r in group:
                quantized = {}
                for part in (part_names(self.model.config.nlayers) if r.part == "all" else [r.part]):
                    quantized.update(quantize_part(self.model, part, r.precision, r.rounding, self.hessians))
                self.live.append(_State(r, self.model, self.split, quantized, self.n))
            self._fp32_hidden = None          # fp32 reads the text again for each group
        a, b = self.pos, min(self.pos + self.call_tokens, self.n)
        x_ids = self.ids[a:b].view(-1, 1)               # (T, 1)
        y = self.ids[a + 1:b + 1].view(-1, 1)
        entry = self._entry(group[0])
        # fp32, carrying its state: its input to every layer, and its log-probs
        inputs = []
        x = self.split.encoder(x_ids)                   # (T, 1, ninp)
        hidden = self._fp32_hidden or [None] * len(self.split.rnn)
        for k, layer in enumerate(self.split.rnn):
            inputs.append(x)
            x, hidden[k] = layer(x, hidden[k])
        self._fp32_hidden = hidden
        top = x.view(-1, x.size(-1))                    # (T, nhid)
        bias = self.split.decoder.bias
        ref = torch.log_softmax(torch.addmm(bias, top, self.split.decoder.weight.t()), -1)     # (T, V)
        ref_nll = -ref.gather(1, y).view(-1)
        self.fp32_nll[a:b] = ref_nll.numpy()
        p_ref = ref.exp().numpy()                       # numpy's row dot products and argmax: 5x torch's here
        ref_np = ref.numpy()
        ref_top = ref_np.argmax(-1)
        neg_entropy = np.vecdot(p_ref, ref_np)          # sum p log p, per token
        for s in self.live:
            if entry == DECODER:
                h = top
            else:
                if entry == 0:
                    w = s.encoder if s.encoder is not None else self.split.encoder.weight
                    xs, first = torch.nn.functional.embedding(x_ids, w), 0
                else:
                    xs, first = inputs[entry - 1], entry - 1
                hs = s.hidden or [None] * len(s.layers)
                for k in range(first, len(s.layers)):
                    xs, hs[k] = s.layers[k](xs, hs[k])
                s.hidden = hs
                h = xs.view(-1, xs.size(-1))
            lq = torch.log_softmax(torch.addmm(bias, h, s.decoder.t()), -1)
            lq_np = lq.numpy()
            s.kl[a:b] = np.maximum(neg_entropy - np.vecdot(p_ref, lq_np), 0.0)     # KL(fp32 || rung)
            s.top1[a:b] = lq_np.argmax(-1) == ref_top
            s.dnll[a:b] = (-lq.gather(1, y).view(-1) - ref_nll).numpy()
        self.pos = b
        if self.pos >= self.n:
            for s in self.live:
                self.results_[s.rung] = self._summary(s)
            self.live, self.group, self.pos = [], self.group + 1, 0
        self.seconds += time.perf_counter() - t0
        return not self.done

    def _summary(self, s: _State) -> RungResult:
        block = stats.block_tokens(self.n)
        r = s.rung
        return RungResult(r.part, r.bits, r.group, r.rounding,
                          kl=float(s.kl.astype(np.float64).mean()), kl_se=stats.batch_means_se(s.kl, block),
                          top1=float(s.top1.mean()), top1_se=stats.batch_means_se(s.top1, block),
                          dloss=float(s.dnll.astype(np.float64).mean()), dloss_se=stats.batch_means_se(s.dnll, block),
                          file_mb=self._file_mb(s.quantized), tokens=self.n)

    def results(self) -> list[RungResult]:
        """The measured rungs, by part (embedding, all, each layer, decoder), then as given."""
        return list(self.results_.values())

    def fp32_loss(self) -> tuple[float, float | None]:
        nll = self.fp32_nll[:self.n]
        return float(nll.astype(np.float64).mean()), stats.batch_means_se(nll, stats.block_tokens(self.n))


# ------------------------------------------------------------------ reading a ladder record
def rung_table(record: dict, rounding: str, group: int | None) -> dict[str, dict[int, dict]]:
    """part -> bits -> the rung's record, for one rounding and grouping of a stored ladder."""
    out: dict[str, dict[int, dict]] = {}
    for r in record["rungs"]:
        if r["rounding"] == rounding and r["group"] == group:
            out.setdefault(r["part"], {})[r["bits"]] = r
    return out


def format_ladder(record: dict) -> str:
    """The ladder as text: per rounding and grouping, KL(fp32 || rung) ± its standard error for each
    part (rows) at each width (columns), then top-1 and the packed file's MB."""
    from .stats import fmt_pm
    fp = record["fp32"]
    lines = [f"bit ladder: {record['tokens']:,} {record['split']} tokens ({record['slice']}), weights dequantized and "
             f"computed in fp32, calls of {record['call_tokens']} tokens; fp32 loss "
             f"{fmt_pm(fp['loss'], fp['loss_se'], 4, False)}, packed file {fp['file_mb']:.2f} MB"]
    combos = sorted({(r["rounding"], r["group"] or 0) for r in record["rungs"]})
    for rounding, g in combos:
        table = rung_table(record, rounding, g or None)
        bits = sorted({b for row in table.values() for b in row}, reverse=True)
        for title, fmt in (("KL(fp32 || model), nats", lambda r: fmt_pm(r["kl"], r["kl_se"], 5, False)),
                           ("top-1 agreement", lambda r: f"{r['top1']:.4f}"),
                           ("packed file, MB", lambda r: f"{r['file_mb']:.2f}")):
            lines += ["", f"{rounding}, {'one scale per row' if not g else f'groups of {g}'}: {title}",
                      f"{'part':<10}" + "".join(f"{f'{b} bits':>20}" for b in bits)]
            for part, row in table.items():
                lines.append(f"{part:<10}" + "".join(f"{fmt(row[b]) if b in row else '':>20}" for b in bits))
    lines += ["", "±: standard error by batch means over 20 blocks of consecutive tokens (wlm.stats); a lower bound "
                  "on a short slice"]
    return "\n".join(lines)
