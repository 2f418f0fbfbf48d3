"""Where int8 loses, and why it is faster: one variant against fp32, part by part, on the first
N test tokens (bptt 25, batch 1), in chunks a caller can interleave with other work.

1. Error per part (torch variants): the SQNR of each part's weights (fp32 against
   dequantized int8); of its output when fed the fp32 model's input to it ("shadow": the part
   alone); and of each model's own output of it ("running": the error accumulated up to there).
2. Sensitivity: loss change, KL(fp32 || model) and top-1 agreement when only one part is
   quantized (each LSTM layer, the decoder per tensor and per channel, the embedding 8-bit),
   all in lockstep with fp32 and the variant through ``wlm.evaluate.Comparison``, as Measure,
   each with its standard error by batch means (``wlm.stats``), and which parts' effects are
   distinguishable from each other and from zero.
3. Time per part of the real fp32 model and of the variant, from those same chunks: the
   embedding, the LSTM, the decoder, and the log-softmax and loss; an ONNX Runtime variant's
   from its own profiler, per node. Every model is called once, untimed, before the timed
   chunks (an ONNX Runtime session is made at its first call), and that call is left out of
   the profile too.

Example:
    >>> ins = Inspection(ckpt.model, variant, corpus.test, max_tokens=10_000)
    >>> while ins.step(): pass
    >>> report = ins.report()       # JSON-ready: modules, sensitivity, time, sizes
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch

from . import layerwise as lw
from . import stats
from .data import batchify, get_batch
from .evaluate import Comparison
from .model import detach_hidden

TIMED_PARTS = (("embedding", "encoder"), ("lstm", "rnn"), ("decoder", "decoder"))


def alone_parts(config) -> list[tuple[str, str]]:
    """(part, option) pairs quantized one at a time: every option of every part but fp32
    (``wlm.layerwise.PART_OPTIONS``), the embedding last."""
    embedding, *rest = lw.parts(config)
    return [(p, o) for p in (*rest, embedding) for o in lw.PART_OPTIONS[lw.kind_of(p)] if o != "fp32"]


class PartTimer:
    """Times the calls of a torch model's embedding, LSTM and decoder made while ``active``
    (wrapping their forward on the instance; ``close`` removes the wrappers). The model may be
    shared, e.g. with a Generate: its calls between two chunks are not counted."""

    def __init__(self, model):
        self.seconds = {name: 0.0 for name, _ in TIMED_PARTS}
        self.active = False
        self._wrapped = []
        for name, attr in TIMED_PARTS:
            part = getattr(model, attr)       # a split model's LSTM is a list of one-layer LSTMs
            for module in (part if isinstance(part, torch.nn.ModuleList) else [part]):
                self._wrap(module, name)

    def _wrap(self, module, name: str) -> None:
        forward = module.forward

        def timed(*args, **kw):
            if not self.active:
                return forward(*args, **kw)
            t0 = time.perf_counter()
            out = forward(*args, **kw)
            self.seconds[name] += time.perf_counter() - t0
            return out
        module.forward = timed
        self._wrapped.append(module)

    def close(self) -> None:
        for module in self._wrapped:
            del module.forward
        self._wrapped = []


def ort_part_seconds(profile_file: str, skip_runs: int = 0) -> dict[str, float]:
    """Seconds per part from an ONNX Runtime profile: its nodes' kernel times, by the exporter's
    names (``/encoder/``, ``/rnn/``, ``/decoder/``), leaving out the nodes of the first
    ``skip_runs`` runs (``model_run`` events: the untimed warm-up calls)."""
    events = json.loads(Path(profile_file).read_text())
    runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("cat") == "Session"
                  and e.get("name") == "model_run")[:skip_runs]
    skipped = (lambda ts: any(a <= ts <= b for a, b in runs))      # noqa: E731
    out = {name: 0.0 for name, _ in TIMED_PARTS}
    out["other nodes"] = 0.0
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time") or skipped(e.get("ts", 0)):
            continue
        name = e["name"]
        part = next((p for p, a in TIMED_PARTS if f"/{a}/" in name), "other nodes")
        out[part] += e["dur"] / 1e6
    return out


class Inspection:
    """One variant against fp32, part by part (see the module's docstring).

    Args:
        fp32: the checkpoint's fp32 model.
        variant: a ``wlm.variants.Variant`` (torch or ONNX Runtime).
        ids: the test split; ``max_tokens``: its first N tokens; ``bptt``: chunk length (25).
    """

    def __init__(self, fp32, variant, ids: torch.Tensor, *, max_tokens: int | None = None, bptt: int = 25):
        self.fp32, self.variant, self.bptt = fp32.eval(), variant, bptt
        cfg = fp32.config
        self.split = lw.SplitModel(fp32).eval()
        self.plan = getattr(variant.model, "plan", None) or (
            lw.plan_of(variant.spec.recipe_config, cfg) if variant.spec.engine == "torch" else None)
        self.quant = lw.quantize_plan(self.split, self.plan) if self.plan else None
        self.alone = {(p, o): lw.quantize_plan(self.split, {p: o}) for p, o in alone_parts(cfg)}
        ids = ids[:max_tokens] if max_tokens else ids
        self.data = batchify(ids, 1)
        self.rows = self.data.size(0) - 1
        self.row = 0
        # phase 1: errors per part (torch variants)
        self.err = {p: {"shadow": lw.SqnrSum(), "running": lw.SqnrSum()} for p in lw.parts(cfg)}
        # each layer's (h, c) in the fp32 model and in the variant's own run, carried over chunks
        self.hidden = {"fp32": _layer_hidden(self.split), "quant": _layer_hidden(self.split)}
        # phase 2: sensitivity and time, in lockstep
        self.model_for_time = variant.model
        if variant.spec.engine == "onnxruntime":
            from .onnx_engine import OrtModel
            m = variant.model
            self.model_for_time = OrtModel(m.path, m.nlayers, m.nhid, m.thread_counts, profile=True)
        models = {"fp32": self.fp32, variant.name: self.model_for_time,
                  **{f"{p} {o}": m for (p, o), m in self.alone.items()}}
        self.comparison = Comparison(models, ids, bptt=bptt, time_forward=True)
        self.timers = {"fp32": PartTimer(self.fp32)}
        if variant.spec.engine == "torch":
            self.timers[variant.name] = PartTimer(variant.model)
        self._report = None

    @property
    def tokens(self) -> tuple[int, int]:
        """(steps done, steps in all), in tokens: the error pass, then the lockstep pass."""
        first = self.rows if self.quant else 0
        done = (self.row if self.quant else 0) + self.comparison.tokens[0]
        return done, first + self.comparison.tokens[1]

    @property
    def done(self) -> bool:
        return self.comparison.done

    @torch.inference_mode()
    def step(self) -> bool:
        """One chunk: of the error pass while it lasts, then of the lockstep pass."""
        if self.quant is not None and self.row < self.rows:
            self._error_chunk()
            return True
        self.comparison.warm()            # once per model, untimed: before the part timers run
        for t in self.timers.values():
            t.active = True
        try:
            more = self.comparison.step()
        except BaseException:
            self.close()
            raise
        finally:
            for t in self.timers.values():
                t.active = False
        if not more:
            self.close()
        return more

    def _error_chunk(self) -> None:
        x, _ = get_batch(self.data, self.row, self.bptt)
        S, Q = self.split, self.quant
        e_f, e_q = S.encoder(x), Q.encoder(x)
        self.err["embedding"]["shadow"].add(e_f, e_q)
        self.err["embedding"]["running"].add(e_f, e_q)
        hf, hq = self.hidden["fp32"], self.hidden["quant"]
        start = list(hf)                  # the fp32 layers' states at the start of this chunk
        inp_f, inp_q = e_f, e_q
        for k in range(len(S.rnn)):
            out_f, hf[k] = S.rnn[k](inp_f, start[k])
            out_q, hq[k] = Q.rnn[k](inp_q, hq[k])
            # the layer alone: the int8 layer fed the fp32 layer's input and starting state
            shadow, _ = Q.rnn[k](inp_f, start[k])
            self.err[f"lstm.{k}"]["shadow"].add(out_f, shadow)
            self.err[f"lstm.{k}"]["running"].add(out_f, out_q)
            inp_f, inp_q = out_f, out_q
        logits_f = S.decoder(inp_f)
        self.err["decoder"]["shadow"].add(logits_f, Q.decoder(inp_f))
        self.err["decoder"]["running"].add(logits_f, Q.decoder(inp_q))
        for h in (hf, hq):
            for k in range(len(h)):
                h[k] = detach_hidden(h[k])
        self.row = min(self.row + self.bptt, self.rows)

    def close(self) -> None:
        for t in self.timers.values():
            t.close()

    def report(self) -> dict:
        """Everything found, JSON-ready (an infinite SQNR, a part left in fp32, is null)."""
        if self._report is not None:
            return self._report
        cfg = self.fp32.config
        c = self.comparison
        res = dict(zip(c.models, c.results()))
        ref, var = res["fp32"], res[self.variant.name]
        fin = (lambda v: None if v is None or not math.isfinite(v) else round(v, 3))  # noqa: E731
        sens = []
        for (p, o), _ in self.alone.items():
            name = f"{p} {o}"
            r = res[name]
            sens.append({"part": p, "option": o, "dloss": r.loss - ref.loss, "kl": r.agreement.kl_mean,
                         "top1": r.agreement.top1, "dloss_se": c.loss_change_se(name),
                         "kl_se": r.agreement.kl_mean_se, "top1_se": r.agreement.top1_se})
        cov = c.metric_cov([f"{p} {o}" for p, o in self.alone], "kl")
        by = {(s["part"], s["option"]): s for s in sens}
        wsq = lw.weight_sqnr(self.split, self.quant) if self.quant else {}
        modules = []
        for p in lw.parts(cfg):
            option = self.plan[p] if self.plan else None
            alone_option = option if option and option != "fp32" else lw.PART_OPTIONS[lw.kind_of(p)][1]
            a = by[(p, alone_option)]
            modules.append({
                "module": p, "option": option,
                "weight_sqnr_db": fin(wsq[p]["all"]) if wsq else None,
                "weights_sqnr_db": {k: fin(v) for k, v in wsq[p].items() if k != "all"} if wsq else None,
                "shadow_sqnr_db": fin(self.err[p]["shadow"].db) if self.quant else None,
                "running_sqnr_db": fin(self.err[p]["running"].db) if self.quant else None,
                "alone_option": alone_option, "alone_dloss": a["dloss"], "alone_kl": a["kl"], "alone_top1": a["top1"],
                "alone_dloss_se": a["dloss_se"], "alone_kl_se": a["kl_se"], "alone_top1_se": a["top1_se"]})
        sizes = {p: {o: lw.part_mb((self.alone[(p, o)] if o != "fp32" else self.split).part(p))
                     for o in lw.PART_OPTIONS[lw.kind_of(p)]} for p in lw.parts(cfg)}
        whole = lw.part_mb(self.split)          # the file of the whole model, against its parts' files
        self._report = {
            "variant": self.variant.name, "engine": self.variant.spec.engine, "tokens": ref.tokens,
            "plan": self.plan, "modules": modules, "sensitivity": sens,
            "end_to_end": {"dloss": var.loss - ref.loss, "kl": var.agreement.kl_mean, "top1": var.agreement.top1,
                           "dloss_se": c.loss_change_se(self.variant.name), "kl_se": var.agreement.kl_mean_se,
                           "top1_se": var.agreement.top1_se},
            "se_block_tokens": c.se_block_tokens,
            # covariance of the single-part KL means (in the order of "sensitivity"): the error of
            # any sum or difference of them, e.g. a recipe's predicted KL against another's
            "sensitivity_kl_cov": cov.tolist() if cov is not None else None,
            "kl_ranking": kl_ranking(sens, cov),
            "time": {"fp32": self._times("fp32"), self.variant.name: self._times(self.variant.name)},
            "part_sizes_mb": sizes, "size_overhead_mb": whole - sum(v["fp32"] for v in sizes.values()),
            "note": None if self.quant else (
                "ONNX Runtime quantizes its own graph (its LSTM and MatMul kernels quantize the activations "
                "inside the kernel), so its parts cannot be fed the fp32 model's tensors one by one; errors per "
                "part are given for the torch variants. Sensitivity is the fp32 model's, part by part; time per "
                "part comes from ONNX Runtime's profiler.")}
        return self._report

    def _times(self, name: str) -> dict:
        c = self.comparison
        total, forward = c.seconds[name], c.forward_seconds[name]
        rest = "rest of the forward"
        if name in self.timers:
            parts = dict(self.timers[name].seconds)
        else:                   # ONNX Runtime: its profiler's kernel times; the rest is the session's own
            profile = self.model_for_time.end_profiling()      # its first run was the untimed warm-up
            parts, rest = ort_part_seconds(profile, skip_runs=1), "session and copies"
            Path(profile).unlink(missing_ok=True)
        parts["log-softmax and loss"] = total - forward
        parts[rest] = forward - sum(v for k, v in parts.items() if k != "log-softmax and loss")
        return {"total": total, "parts": parts}


def kl_ranking(sens: list[dict], cov=None, z: float = stats.Z95) -> list[dict]:
    """The single-part models from the largest KL to the smallest, each with whether its KL is
    above the next one's by more than the noise: the paired difference of the two means against
    z times its standard error (from ``cov``, the covariance of the means in the order of
    ``sens``; None: unknown). Also whether its loss change is within noise of zero."""
    order = sorted(range(len(sens)), key=lambda i: -sens[i]["kl"])
    out = []
    for rank, i in enumerate(order):
        s = sens[i]
        entry = {"part": s["part"], "option": s["option"], "kl": s["kl"], "kl_se": s.get("kl_se"),
                 "dloss_within_noise": stats.within_noise(s["dloss"], s.get("dloss_se")),
                 "above_next": None, "above_next_se": None, "distinct_from_next": None}
        if rank + 1 < len(order):
            j = order[rank + 1]
            entry["above_next"] = s["kl"] - sens[j]["kl"]
            if cov is not None:
                se = math.sqrt(max(0.0, cov[i][i] + cov[j][j] - 2 * cov[i][j]))
                entry["above_next_se"] = se
                entry["distinct_from_next"] = entry["above_next"] > z * se
        out.append(entry)
    return out


def noise_text(report: dict) -> str:
    """Which parts' effects are distinguishable, in a few lines (for the command line)."""
    ranking = report.get("kl_ranking")
    if not ranking:
        return "(no standard errors in this analysis: it was stored before they were measured)"
    block = report.get("se_block_tokens")
    lines = [f"single-part KL, largest first, ± standard error (batch means over blocks of {block:,} tokens); "
             f"'>' the next is smaller beyond noise (95%), '~' not distinguishable from the next:"]
    parts = []
    for e in ranking:
        sep = "" if e["above_next"] is None else (" > " if e["distinct_from_next"] else " ~ ")
        parts.append(f"{e['part']} {e['option']} {stats.fmt_pm(e['kl'], e['kl_se'], 6, False)}{sep}")
    lines.append("  " + "".join(parts))
    noisy = [f"{e['part']} {e['option']}" for e in ranking if e["dloss_within_noise"]]
    if noisy:
        lines.append(f"loss change within noise of zero (95%): {', '.join(noisy)}")
    e2e = report.get("end_to_end", {})
    if e2e.get("dloss_se") is not None:
        lines.append(f"{report['variant']} end to end: loss change {stats.fmt_pm(e2e['dloss'], e2e['dloss_se'])}"
                     f"{stats.noise_mark(e2e['dloss'], e2e['dloss_se'])}, KL "
                     f"{stats.fmt_pm(e2e['kl'], e2e['kl_se'], 6, False)}")
    return "\n".join(lines)


def _layer_hidden(split: lw.SplitModel) -> list:
    h, c = split.init_hidden(1)
    return [(h[k:k + 1], c[k:k + 1]) for k in range(split.config.nlayers)]


def _db(v) -> str:
    return "fp32" if v is None else f"{v:.1f}"


def report_text(report: dict) -> str:
    """The command line's report: parts, sensitivity, time, and the derived recipe if any."""
    v = report["variant"]
    lines = [f"{v} ({report['engine']}) against fp32, first {report['tokens']:,} test tokens, bptt 25, batch 1", ""]
    head = (f"{'part':<10} {'precision':<17} {'weight dB':>9} {'alone dB':>9} {'running dB':>10}   "
            f"{'alone as':<17} {'Δloss':>9} {'KL':>9} {'top-1':>7}")
    lines += [head, "-" * len(head)]
    for m in report["modules"]:
        lines.append(f"{m['module']:<10} {str(m['option'] or 'onnxruntime'):<17} {_db(m['weight_sqnr_db']):>9} "
                     f"{_db(m['shadow_sqnr_db']):>9} {_db(m['running_sqnr_db']):>10}   {m['alone_option']:<17} "
                     f"{m['alone_dloss']:+9.5f} {m['alone_kl']:9.6f} {m['alone_top1']:7.4f}")
    lines += ["", "sensitivity (one part quantized, the rest fp32):"]
    for s in sorted(report["sensitivity"], key=lambda s: -s["kl"]):
        lines.append(f"  {s['part']:<10} {s['option']:<17} Δloss {s['dloss']:+.5f}  KL {s['kl']:.6f}  "
                     f"top-1 {s['top1']:.4f}  size {report['part_sizes_mb'][s['part']][s['option']]:.2f} MB "
                     f"(fp32 {report['part_sizes_mb'][s['part']]['fp32']:.2f})")
    e = report["end_to_end"]
    lines += ["", f"end to end: Δloss {e['dloss']:+.5f}  KL {e['kl']:.6f}  top-1 {e['top1']:.4f}", "",
              "time per part (seconds over the same chunks):"]
    for name, t in report["time"].items():
        shares = ", ".join(f"{p} {s:.3f} ({s / t['total']:.0%})" for p, s in t["parts"].items())
        lines.append(f"  {name:<22} total {t['total']:.3f}: {shares}")
    if report.get("note"):
        lines += ["", report["note"]]
    if report.get("recipe"):
        r = report["recipe"]
        lines += ["", f"derived recipe ({r['rule']}, budget {r['budget_mb']} MB): predicted KL "
                      f"{r['predicted_kl']:.6f}, {r['predicted_mb']:.3f} MB; written to {report['recipe_file']}"]
        lines += [f"  {p:<10} {o}" for p, o in r["plan"].items()]
    return "\n".join(lines)
