"""What "dynamic" means, shown on a real text: a dynamic int8 model takes its activations' scale
from each call's own input, so the same text read in one call or in chunks gives different
log-probabilities; a model with fp32 or weight-only (low-bit, 8-bit rows) activations does not.

For the decoder of a torch dynamic variant (``DynamicQuantizedLinear``, reduce_range on x86 and
fbgemm), each call's input x (the top LSTM layer's output, tokens x 256) is quantized to 128
levels (0 .. 127) between min(0, min x) and max(0, max x): scale = (max - min) / 127 and a zero
point, as ``torch._choose_qparams_per_tensor(x, reduce_range=True)`` computes them. The LSTM's
int8 matrices quantize their inputs per call in the same way.

    >>> d = chunking(models, dictionary, ids, chunk=64)
    >>> d.calls["qint8"]        # per call: tokens, the decoder input's range, its scale
    >>> d.max_diff["qint8"], d.max_diff["fp32"]
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .data import EOS


@dataclass
class Chunking:
    """Each model's log p of every word read in calls of ``chunk`` tokens and in one call, and the
    decoder input's range and scale per call (dynamic int8 decoders only)."""
    chunk: int
    tokens: int
    diff: dict[str, np.ndarray]            # |log p (chunks) - log p (one call)| per word
    calls: dict[str, list[dict]]           # per call of ``chunk`` tokens: start, tokens, min, max, scale, zero_point
    whole: dict[str, dict]                 # the same for the one call

    @property
    def max_diff(self) -> dict[str, float]:
        return {n: float(d.max()) if len(d) else 0.0 for n, d in self.diff.items()}

    @property
    def mean_diff(self) -> dict[str, float]:
        return {n: float(d.mean()) if len(d) else 0.0 for n, d in self.diff.items()}


def is_dynamic(model) -> bool:
    """Whether the model's decoder quantizes its input per call (a torch dynamic int8 Linear)."""
    dec = getattr(model, "decoder", None)
    return type(dec).__module__.startswith("torch.ao.nn.quantized.dynamic") and getattr(
        getattr(dec, "_packed_params", None), "dtype", None) == torch.qint8


def input_qparams(x: torch.Tensor) -> dict:
    """The range, scale and zero point a dynamic int8 Linear takes for input ``x`` (reduce_range)."""
    scale, zero = torch._choose_qparams_per_tensor(x.detach().float().contiguous(), True)
    return {"min": float(x.min()), "max": float(x.max()), "scale": float(scale), "zero_point": int(zero)}


@torch.inference_mode()
def _read(model, inputs: torch.Tensor, targets: torch.Tensor, chunk: int, seen: list) -> np.ndarray:
    """log p of each target, the inputs read in calls of ``chunk`` (hidden state carried); the
    decoder's inputs of each call appended to ``seen`` when it is a dynamic int8 one. (The model
    is shared with other visitors' requests, so nothing is hooked into it: its forward is taken in
    its two steps, ``features`` and the decoder.)"""
    dynamic = is_dynamic(model) and hasattr(model, "features")
    hidden, out = model.init_hidden(1), []
    for a in range(0, len(inputs), chunk):
        ids = inputs[a:a + chunk].view(-1, 1)
        if dynamic:
            x, hidden = model.features(ids, hidden)
            seen.append(input_qparams(x))
            logits = model.decoder(x)
        else:
            logits, hidden = model(ids, hidden)
        lp = torch.log_softmax(logits.reshape(-1, logits.size(-1)).float(), -1)
        out.append(lp.gather(1, targets[a:a + chunk].view(-1, 1)).view(-1))
    return torch.cat(out).double().numpy()


def chunking(models: dict, dictionary, ids: list[int], chunk: int) -> Chunking:
    """Each of ``models`` (name -> model) reads ``ids`` (after a first ``<eos>``, as Your text does)
    in calls of ``chunk`` tokens and in one call; see ``Chunking``."""
    inputs = torch.tensor([dictionary.word2idx[EOS]] + list(ids[:-1]), dtype=torch.long)
    targets = torch.tensor(list(ids), dtype=torch.long)
    diff, calls, whole = {}, {}, {}
    for name, model in models.items():
        seen_chunks, seen_one = [], []
        by_chunk = _read(model, inputs, targets, chunk, seen_chunks)
        at_once = _read(model, inputs, targets, max(1, len(inputs)), seen_one)
        diff[name] = np.abs(by_chunk - at_once)
        for k, c in enumerate(seen_chunks):
            c.update(start=k * chunk, tokens=min(chunk, len(inputs) - k * chunk))
        calls[name] = seen_chunks
        whole[name] = {**seen_one[0], "start": 0, "tokens": len(inputs)} if seen_one else {}
    return Chunking(chunk, len(ids), diff, calls, whole)


def explain(d: Chunking, reference: str, variant: str) -> str:
    """Markdown: what cutting the text differently did to each model, and the decoder input's
    range and scale per call (a dynamic variant)."""
    v, r = d.max_diff, d.mean_diff
    fmt = lambda x: f"{x:.4f}" if x >= 1e-4 else f"{x:.1e}"         # noqa: E731
    if d.tokens <= d.chunk:
        head = (f"**What \"dynamic\" means, on this text.** The panel reads a text in calls of {d.chunk} tokens; "
                f"this one ({d.tokens} tokens) fits in one call, so there is nothing to cut differently: paste one of "
                f"more than {d.chunk} words to see a dynamic int8 model's figures move with the calls.")
        w = d.whole.get(variant)
        if w:
            head += (f" {variant}'s decoder quantized this call's input to 128 levels between {w['min']:+.3f} and "
                     f"{w['max']:+.3f}: scale {w['scale']:.5f}, zero point {w['zero_point']}.")
        return head
    head = (f"**What \"dynamic\" means, on this text.** The panel reads the text in calls of {d.chunk} tokens. Read "
            f"in one call of {d.tokens:,} instead, **{variant}** gives each word a log p that differs by up to "
            f"**{fmt(v[variant])}** nats (mean {fmt(r[variant])}); **{reference}** by {fmt(v[reference])}.")
    calls = d.calls.get(variant) or []
    if not calls:
        return head + (f" {variant}'s activations are not quantized (fp32, or weight-only low-bit or 8-bit weights), "
                       f"so how the text is cut changes nothing but float rounding.")
    w = d.whole[variant]
    rows = "\n".join(f"| {c['start'] + 1}-{c['start'] + c['tokens']} | {c['min']:+.3f} .. {c['max']:+.3f} | "
                     f"{c['scale']:.5f} | {c['zero_point']} |" for c in calls[:12])
    more = f"\n\n({len(calls) - 12} more calls not listed.)" if len(calls) > 12 else ""
    return (head + f" Its decoder quantizes each call's input (the top LSTM layer's output) to 128 levels between "
            f"its own smallest and largest value, so each call gets its own scale; the LSTM's int8 layers do the "
            f"same.\n\n| tokens of the call | decoder input range | scale | zero point |\n|---|---|---:|---:|\n"
            f"{rows}\n| one call, 1-{w['tokens']} | {w['min']:+.3f} .. {w['max']:+.3f} | {w['scale']:.5f} | "
            f"{w['zero_point']} |{more}")
