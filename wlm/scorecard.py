"""The scorecard: fp32 against one variant in three figures (size, speed, quality) and a line
of where they come from, read off one measurement record (``wlm.results``).

It is the first thing on the page; every figure carries a ``data-field`` so a test can read
it back, and the colours are the theme's, so it reads in light and dark alike.
"""
from __future__ import annotations

import html
import math

from .palette import MODULE_LABELS
from .stats import fmt_pm, within_noise

TITLE = "wlm: fp32 vs int8 LSTM"
DESCRIPTION = ("The PyTorch tutorial's LSTM word language model against its int8 and low-bit copies: size, speed and "
               "quality measured, two models writing side by side.")
HEADER = """# fp32 vs int8, and lower: an LSTM language model
The PyTorch tutorial's LSTM word language model (WikiText-2, 33,278 words) against its int8 and low-bit copies:
what each buys and what it costs, measured. Pick a variant: the scorecard and the right-hand pane follow it."""
ABOUT = """**The tutorial's own figures** (PyTorch, "Dynamic Quantization on an LSTM Word Language Model", its model
and machine, not measured here): 113.9 MB → 79.7 MB, test loss 5.167 → 5.168, evaluation 1.76x faster.
The scorecard above is this project's model, measured as the line under it says.

**Why the size stops at 1.43x for qint8:** the tutorial quantizes the LSTM and the decoder; the 68 MB embedding
stays fp32. `qint8-embedding-8bit` and `ort-int8` store it in 8 bits too.

Command line, tests and the measured tables: the README of this Space and its `docs/`."""


def _row(record: dict, name: str) -> dict | None:
    return next((r for r in record.get("rows", ()) if r["model"] == name), None)


def kept_fp32(fp: dict, q: dict) -> list[tuple[str, float]]:
    """The parts the variant stores as fp32 still (its size within 1% of fp32's), with MB."""
    out = []
    for part, mb in fp.get("modules_mb", {}).items():
        qmb = q.get("modules_mb", {}).get(part)
        if qmb is not None and mb > 0 and abs(qmb - mb) <= 0.01 * mb:
            out.append((MODULE_LABELS.get(part, part), mb))
    return out


def provenance(record: dict) -> str:
    """One line: which tokens, how many threads, where and when, with which libraries."""
    fp = record["rows"][0]
    what = ("the full WikiText-2 test split" if str(record.get("slice", "")).startswith("all")
            else "the first WikiText-2 test tokens")
    where = "the project's development machine" if record.get("shipped") else "this server"
    if record.get("source") == "the page's recipe":
        where = "this server, a quick check of your recipe"
    versions = ", ".join(f"{k} {v}" for k, v in record.get("versions", {}).items())
    threads = record.get("threads", 1)
    return (f"{what[0].upper()}{what[1:]} ({fp['tokens']:,} tokens, calls of 25), {threads} thread{'s' if threads != 1 else ''}, "
            f"measured {str(record.get('when', ''))[:10]} on {record.get('cpu', '?')} ({where}; {versions}).")


def _card(title: str, big: str, field: str, lines: list[str]) -> str:
    body = "".join(f'<div class="wlm-card-line">{line}</div>' for line in lines)
    return (f'<div class="wlm-card"><div class="wlm-card-title">{title}</div>'
            f'<div class="wlm-card-big" data-field="{field}">{big}</div>{body}</div>')


def scorecard_html(record: dict | None, variant: str, note: str = "") -> str:
    """The scorecard of ``variant`` against fp32 in ``record`` (None, or a record without the
    variant: a card that says what to do). ``note``: a line under it (e.g. what just failed)."""
    e = html.escape
    foot = f'<div class="wlm-card-note" data-field="note">{e(note)}</div>' if note else ""
    fp, q = (_row(record, "fp32"), _row(record, variant)) if record else (None, None)
    if not fp or not q:
        why = ("No measurement of " + e(variant) + " is shown yet: tick it in <b>Measure</b> and click Measure."
               if record else "" if note else "No measurement yet: open <b>Measure</b> and click Measure.")
        return f'<div class="wlm-scorecard" id="wlm-scorecard-body"><div class="wlm-card-note">{why}</div>{foot}</div>'
    a = q.get("agreement") or {}
    kept = kept_fp32(fp, q)
    kept_txt = (" · stays fp32: " + ", ".join(f"{n} ({mb:.1f} MB)" for n, mb in kept)) if kept else ""
    size = _card("Size", f'{q["size_mb"]:.1f} MB', "size_mb",
                 [f'<span data-field="size_ratio">{fp["size_mb"] / q["size_mb"]:.2f}x</span> smaller than fp32\'s '
                  f'{fp["size_mb"]:.1f} MB' + e(kept_txt)])
    ci = q.get("speedup_ci")
    ci_txt = f" (95% interval {ci[0]:.2f}-{ci[1]:.2f})" if ci and all(map(math.isfinite, ci)) else ""
    threads = record.get("threads", 1)
    if variant in record.get("no_speed", ()):
        speed = _card("Evaluation speed", "no speed claimed", "speedup",
                      ["its low-bit weights are dequantized and computed in fp32, so it runs as fp32 does; "
                       "a packed low-bit kernel would be needed for a speed-up"])
    else:
        speed = _card("Evaluation speed", f'{q["speedup"]:.2f}x {"faster" if q["speedup"] >= 1 else "slower"}',
                      "speedup", [f'{q["tokens_per_s"]:,.0f} vs {fp["tokens_per_s"]:,.0f} tokens/s{ci_txt}',
                                  f'{threads} thread{"s" if threads != 1 else ""}, {e(str(record.get("cpu", "?")))}'])
    se = q.get("loss_change_se")
    noise = ' <span class="wlm-noise" data-field="within_noise">within noise</span>' if within_noise(
        q["loss_change"], se) else ""
    quality_lines = [f'loss <span data-field="loss_change">{fmt_pm(q["loss_change"], se)}</span> nats{noise}']
    if a:
        top1_se = a.get("top1_se")
        top1 = f'{a["top1"]:.1%}' + (f" ± {top1_se:.1%}" if top1_se is not None and math.isfinite(top1_se) else "")
        quality_lines.append(f'same top word <span data-field="top1">{top1}</span> · KL '
                             f'<span data-field="kl">{fmt_pm(a["kl_mean"], a.get("kl_mean_se"), 4, sign=False)}'
                             f'</span> nats')
    quality = _card("Quality (perplexity)", f'{fp["ppl"]:.1f} → {q["ppl"]:.1f}', "ppl", quality_lines)
    return (f'<div class="wlm-scorecard" id="wlm-scorecard-body" data-variant="{e(variant)}">'
            f'<div class="wlm-cards">{size}{speed}{quality}</div>'
            f'<div class="wlm-card-note" data-field="provenance">fp32 vs <b>{e(variant)}</b>: '
            f'{e(provenance(record))}</div>{foot}</div>')


CSS = """
.wlm-cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(210px, 1fr)); gap: 10px; }
.wlm-card { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 10px 14px;
  background: var(--block-background-fill); color: var(--body-text-color); }
.wlm-card-title { font-size: 0.85em; text-transform: uppercase; letter-spacing: 0.04em; }
.wlm-card-big { font-size: 1.7em; font-weight: 700; margin: 2px 0 4px; }
.wlm-card-line { font-size: 0.92em; }
.wlm-card-note { font-size: 0.9em; margin-top: 6px; color: var(--body-text-color); }
.wlm-noise { border: 1px solid var(--body-text-color); border-radius: 4px; padding: 0 4px; font-size: 0.85em; }
"""
