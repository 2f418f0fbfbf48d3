"""GPTQ: rounding that compensates its own error, and the input statistics it needs.

For a weight matrix W (rows x cols) whose inputs x (cols) have second moment H = E[x x^T], the
output error of quantized weights W_hat is E|(W - W_hat) x|^2 = tr((W - W_hat) H (W - W_hat)^T).
GPTQ (Frantar et al. 2022, arXiv 2210.17323) rounds the columns one at a time, and after each
pushes that column's rounding error onto the columns not yet rounded, through the inverse of H,
so that later columns correct for earlier ones. Here: columns in blocks of ``BLOCK``, H damped
by ``DAMP`` of its mean diagonal, and the scale of each group chosen by least squared error
(``wlm.grid.mse_scales``) on the weights as they stand when the group starts.

``Calibration`` collects H for every LSTM and decoder matrix from the fp32 model reading text
(the training split: the test split is what the result is judged on, so it must not be what
the rounding was fitted to). It is data: a small .safetensors file keyed by the weights'
state_dict keys (``save`` / ``load``), with the tokens and checkpoint it came from.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .grid import codes_of, mse_scales

BLOCK = 128
DAMP = 0.01
FORMAT = "wlm-calibration/1"
CALIBRATION_FILE = Path(__file__).resolve().parent.parent / "data" / "calibration.safetensors"


def gptq_codes(w: torch.Tensor, hessian: torch.Tensor, bits: int, group: int | None,
               damp: float = DAMP, block: int = BLOCK) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes rows x cols as float, scales rows x groups float16) of ``w`` by GPTQ."""
    w = w.detach().float().clone()
    rows, cols = w.shape
    g = group or cols
    if hessian.shape != (cols, cols):
        raise ValueError(f"the Hessian must be {cols} x {cols} for this matrix, got {tuple(hessian.shape)}")
    if group is not None and block % g and g % block:
        raise ValueError(f"group {g} and block {block} must divide one another")
    h = hessian.detach().double().clone()
    dead = torch.diag(h) == 0                    # inputs that are always 0: their weights do nothing
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    h += damp * torch.mean(torch.diag(h)) * torch.eye(cols, dtype=h.dtype)
    hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True).float()
    codes = torch.zeros_like(w)
    scales = torch.zeros(rows, cols // g, dtype=torch.float16)
    if group is None:
        scales[:, 0] = mse_scales(w, bits, None)[:, 0]
    for i1 in range(0, cols, block):
        i2 = min(i1 + block, cols)
        w1 = w[:, i1:i2].clone()
        err1 = torch.zeros_like(w1)
        h1 = hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = i1 + i
            if group is not None and col % g == 0:       # the group's scale from its weights as they stand now
                scales[:, col // g] = mse_scales(w1[:, i:i + g] if g <= block else w[:, col:col + g], bits, None)[:, 0]
            s = scales[:, col // g]
            c = codes_of(w1[:, i:i + 1], s, bits).view(-1)
            codes[:, col] = c
            e = (w1[:, i] - c * s.float()) / h1[i, i]
            w1[:, i:] -= e.unsqueeze(1) * h1[i, i:].unsqueeze(0)
            err1[:, i] = e
        w[:, i2:] -= err1 @ hinv[i1:i2, i2:]
    return codes, scales


@dataclass
class Calibration:
    """Second moments of the inputs of every LSTM matrix and of the decoder, by weight key:
    ``rnn.weight_ih_lK`` (the layer's input), ``rnn.weight_hh_lK`` (its previous hidden state),
    ``decoder.weight`` (the top layer's output). ``tokens``: how many tokens they average over."""
    hessians: dict[str, torch.Tensor]
    tokens: int
    provenance: dict = field(default_factory=dict)

    @classmethod
    @torch.inference_mode()
    def collect(cls, model, ids: torch.Tensor, max_tokens: int = 50_000, call_tokens: int = 500,
                progress=None) -> "Calibration":
        """Read the first ``max_tokens`` of ``ids`` with the fp32 ``model`` (eval mode, hidden state
        carried, calls of ``call_tokens``) and average x x^T of each matrix's inputs."""
        from .layerwise import SplitModel
        split = SplitModel(model).eval()
        ids = ids[:max_tokens]
        n = len(ids)
        cfg = model.config
        sums = {f"rnn.weight_ih_l{k}": torch.zeros(cfg.ninp if k == 0 else cfg.nhid, cfg.ninp if k == 0 else cfg.nhid,
                                                   dtype=torch.float64) for k in range(cfg.nlayers)}
        sums.update({f"rnn.weight_hh_l{k}": torch.zeros(cfg.nhid, cfg.nhid, dtype=torch.float64)
                     for k in range(cfg.nlayers)})
        sums["decoder.weight"] = torch.zeros(cfg.nhid, cfg.nhid, dtype=torch.float64)
        h, c = split.init_hidden(1)
        hs, cs = list(h.unbind(0)), list(c.unbind(0))
        for start in range(0, n, call_tokens):
            x = split.encoder(ids[start:start + call_tokens].view(-1, 1))            # (T, 1, ninp)
            for k, layer in enumerate(split.rnn):
                flat = x.reshape(-1, x.size(-1)).double()
                sums[f"rnn.weight_ih_l{k}"] += flat.T @ flat
                out, (hk, ck) = layer(x, (hs[k].unsqueeze(0), cs[k].unsqueeze(0)))
                prev = torch.cat([hs[k].unsqueeze(0), out[:-1]]).reshape(-1, cfg.nhid).double()   # h_{t-1}
                sums[f"rnn.weight_hh_l{k}"] += prev.T @ prev
                hs[k], cs[k] = hk[0], ck[0]
                x = out
            flat = x.reshape(-1, cfg.nhid).double()
            sums["decoder.weight"] += flat.T @ flat
            if progress:
                progress(min(n, start + call_tokens), n)
        return cls({k: (v / n).float() for k, v in sums.items()}, n)

    def save(self, path: str | Path = CALIBRATION_FILE) -> Path:
        from safetensors.torch import save_file
        from .storage import atomic_write
        meta = {"format": FORMAT, "tokens": str(self.tokens), "provenance": json.dumps(self.provenance)}
        tensors = {k: v.contiguous() for k, v in self.hessians.items()}
        return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))

    @classmethod
    def check(cls, path: str | Path = CALIBRATION_FILE, checkpoint_sha256: str | None = None) -> None:
        """``load``'s checks from the file's header alone (no tensor read): ValueError as ``load``."""
        cls.load(path, checkpoint_sha256, tensors=False)

    @classmethod
    def load(cls, path: str | Path = CALIBRATION_FILE, checkpoint_sha256: str | None = None,
             tensors: bool = True) -> "Calibration":
        """The calibration in ``path``; ValueError with what to do when it is missing, is not one,
        or was collected on another checkpoint than ``checkpoint_sha256`` (when given)."""
        from .storage import read_safetensors
        path = Path(path)
        how = "collect one with `python -m wlm calibrate` (it reads the training split)"
        try:
            tensors, meta = read_safetensors(path, tensors)
        except ValueError as e:
            raise ValueError(f"rounding gptq needs the calibration file {path} ({e}); {how}") from None
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path} is not a wlm calibration (format {meta.get('format')!r}); {how}")
        provenance = json.loads(meta.get("provenance", "{}"))
        made_on = provenance.get("checkpoint_sha256")
        if checkpoint_sha256 and made_on and made_on != checkpoint_sha256:
            raise ValueError(f"{path} was collected on checkpoint {made_on[:12]}..., not this one "
                             f"({checkpoint_sha256[:12]}...); {how}")
        return cls(tensors, int(meta.get("tokens", 0)), provenance)
