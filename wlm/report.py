"""The measured tables as Markdown, made from the stored records (``wlm.results``), never by hand:
``python -m wlm results --markdown`` writes ``docs/results.md``, ``--short`` the README's table,
and a test checks that both still say what the records say.

Every section names the command that measured it, the machine, the date and the libraries.
"""
from __future__ import annotations

from .data import FULL_SLICE
from .evaluate import fmt_parting
from .ladder import rung_table
from .lowbit import BITS
from .recipe import lowbit_choice
from .results import rows_of
from .stats import fmt_pm, within_noise

TUTORIAL = {"fp32": (113.944064, 5.167, 205.3), "qint8": (79.738484, 5.168, 116.8)}
BUDGETS = (6, 8, 10, 12, 14, 16, 18, 24, 32)


def _where(record: dict) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in record.get("versions", {}).items())
    threads = record.get("threads", 1)
    return (f"{record.get('cpu')}, {threads} thread{'s' if threads != 1 else ''}, {versions}, "
            f"{str(record.get('when', ''))[:10]}")


def full_split(store, checkpoint_sha256: str) -> dict | None:
    """The newest full-split measurement of this checkpoint holding the most variants."""
    records = [r for r in store.all() if r.get("slice") == FULL_SLICE and r.get("checkpoint_sha256") == checkpoint_sha256]
    return max(records, key=lambda r: (len(r["variants"]), r.get("when", ""))) if records else None


def step_ms(record: dict, model: str) -> float | None:
    """The median time of one generation step (W2: one token per call) the record has for ``model``."""
    return ((record.get("speed") or {}).get(model) or {}).get("w2_ms", {}).get("median")


def short_table(record: dict) -> str:
    """The README's table: size, loss change, KL, top-1, evaluation speed-up (calls of 25 tokens)
    and the time of one generation step (one token per call) of each variant."""
    lines = ["| variant | size MB | loss change (nats) | KL (nats) | top-1 | eval speed-up [95%] | ms per word |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    slow = set(record.get("no_speed", ()))
    for m in rows_of(record):
        w2 = step_ms(record, m.model)
        step = "" if w2 is None or m.model in slow else f"{w2:.2f}"
        if m.model == "fp32":
            lines.append(f"| fp32 | {m.size_mb:.1f} | 0 | 0 | 1 | 1.00x | {step} |")
            continue
        a, ci = m.agreement, m.speedup_ci
        up = "no speed claimed" if m.model in slow else (
            f"{m.speedup:.2f}x" + (f" [{ci[0]:.2f}-{ci[1]:.2f}]" if ci else ""))
        lines.append(f"| {m.model} | {m.size_mb:.1f} | {fmt_pm(m.loss_change, m.loss_change_se, 4)} | "
                     f"{fmt_pm(a.kl_mean, a.kl_mean_se, 5, False)} | {fmt_pm(a.top1, a.top1_se, 3, False)} | {up} | "
                     f"{step} |")
    return "\n".join(lines)


def measure_section(record: dict) -> str:
    rows = {m.model: m for m in rows_of(record)}
    fp, q = rows["fp32"], rows.get("qint8")
    out = ["## Every variant on the whole test split\n",
           f"`{record.get('source', 'the app')}`\n",
           f"{record['tokens']:,} predicted tokens by the tutorial's protocol (bptt 25, batch 1, hidden state "
           f"carried), one run of all {len(rows)} models in lockstep; {_where(record)}. Sizes: `torch.save` of the "
           f"state_dict (MB = 1e6 bytes), the `.onnx` file for ONNX Runtime, the packed `.safetensors` for low-bit "
           f"weights. ± is one standard error by batch means over 20 blocks (docs/method.md).\n"]
    if q:
        out += ["### The tutorial's table, reproduced\n",
                "| | size (MB) | test loss | test ppl | eval time (s) | tokens/s |", "|---|---:|---:|---:|---:|---:|"]
        for m in (fp, q):
            out.append(f"| {m.model} (this project) | {m.size_mb:.3f} | {fmt_pm(m.loss, m.loss_se, 4, False)} | "
                       f"{fmt_pm(m.ppl, m.ppl_se, 1, False)} | {m.seconds:.1f} | {m.tokens_per_s:,.0f} |")
        for name, (mb, loss, secs) in TUTORIAL.items():
            out.append(f"| {name} (tutorial) | {mb:.3f} | {loss:.3f} | | {secs:.1f} | |")
        ci = q.speedup_ci
        out.append(f"\nqint8 against fp32 here: **{q.speedup:.2f}x**"
                   + (f" [{ci[0]:.2f}-{ci[1]:.2f}]" if ci else "") + f" faster evaluation, **{fp.size_mb / q.size_mb:.2f}x**"
                   f" smaller, loss **{fmt_pm(q.loss_change, q.loss_change_se, 4)}** nats (paired). The tutorial's: "
                   f"{TUTORIAL['fp32'][2] / TUTORIAL['qint8'][2]:.2f}x, {TUTORIAL['fp32'][0] / TUTORIAL['qint8'][0]:.2f}x, "
                   f"+{TUTORIAL['qint8'][1] - TUTORIAL['fp32'][1]:.3f}.\n")
    slow = set(record.get("no_speed", ()))
    speed, gen, engines = record.get("speed", {}), record.get("generation", {}), record.get("engines", {})
    out += ["### Every variant\n",
            "| variant | engine | size MB | loss change (nats) | top-1 | KL mean (nats) | seconds | tokens/s | "
            "speed-up [95%] | W2 ms/step | generate words/s |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for m in rows.values():
        a, ci = m.agreement, m.speedup_ci
        if m.model == "fp32":
            quality = "0 | | |"
        else:
            noise = " (noise)" if within_noise(m.loss_change, m.loss_change_se) else ""
            quality = (f"{fmt_pm(m.loss_change, m.loss_change_se, 4)}{noise} | {fmt_pm(a.top1, a.top1_se, 4, False)} | "
                       f"{fmt_pm(a.kl_mean, a.kl_mean_se, 5, False)} |")
        up = f"{m.speedup:.2f}x" + (f" [{ci[0]:.2f}-{ci[1]:.2f}]" if ci else "") + (
            " (fp32 compute: no speed claimed)" if m.model in slow else "")
        w2 = step_ms(record, m.model)
        words = (gen.get(m.model) or {}).get("words_per_s")
        out.append(f"| {m.model} | {engines.get(m.model, '')} | {m.size_mb:.2f} | {quality} {m.seconds:.1f} | "
                   f"{m.tokens_per_s:,.0f} | {up} | {'' if w2 is None else f'{w2:.2f}'} | "
                   f"{'' if words is None else f'{words:,.0f}'} |")
    out += ["\nW2: one model step (one token, the hidden state carried), median of the interleaved steps.\n",
            "### Agreement with fp32\n",
            "| vs fp32 | top-1 | KL mean | KL median | KL p99 | overlap (1 - TV) | words before parting | "
            "Δp(true word) mean | Δp rms |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for m in rows.values():
        a = m.agreement
        if not a:
            continue
        out.append(f"| {m.model} | {fmt_pm(a.top1, a.top1_se, 4, False)} | {fmt_pm(a.kl_mean, a.kl_mean_se, 5, False)} | "
                   f"{a.kl_median:.5f} | {a.kl_p99:.4f} | {fmt_pm(a.overlap, a.overlap_se, 4, False)} | "
                   f"{fmt_parting(a.words_before_parting, a.words_before_parting_se)} | "
                   f"{fmt_pm(a.dp_mean, a.dp_mean_se, 5)} | {fmt_pm(a.dp_rms, a.dp_rms_se, 5, False)} |")
    t = record.get("timing") or {}
    if t.get("models_s"):
        ci = t.get("ratio_ci")
        out.append(f"\nCost of measuring: {t['wall_s']:,.0f} s of computing for {t['models_s']:,.0f} s of the models' "
                   f"own calls ({t['wall_s'] / t['models_s']:.3f}x" + (f", ~95% interval {ci[0]:.3f}-{ci[1]:.3f}"
                                                                         if ci else "") + ").")
    return "\n".join(out)


def inspection_section(record: dict) -> str:
    r = record["report"]
    out = [f"## Where {record['variant']} loses, part by part\n", f"`{record.get('source', 'the app')}`\n",
           f"{r['tokens']:,} test tokens ({record['slice']}); {_where(record)}. Alone: only that part quantized, the "
           f"rest fp32.\n",
           f"| part | {record['variant']} has it | weight SQNR dB | alone SQNR dB | running SQNR dB | alone as | "
           f"alone: loss change | alone: KL | alone: top-1 |", "|---|---|---:|---:|---:|---|---:|---:|---:|"]
    db = (lambda v: "" if v is None else f"{v:.1f}")                           # noqa: E731
    for m in r["modules"]:
        out.append(f"| {m['module']} | {m['option'] or 'onnxruntime'} | {db(m['weight_sqnr_db'])} | "
                   f"{db(m['shadow_sqnr_db'])} | {db(m['running_sqnr_db'])} | {m['alone_option']} | "
                   f"{fmt_pm(m['alone_dloss'], m.get('alone_dloss_se'), 5)} | "
                   f"{fmt_pm(m['alone_kl'], m.get('alone_kl_se'), 6, False)} | {m['alone_top1']:.4f} |")
    e = r["end_to_end"]
    out.append(f"| all of {record['variant']} | | | | | | {fmt_pm(e['dloss'], e.get('dloss_se'), 5)} | "
               f"{fmt_pm(e['kl'], e.get('kl_se'), 6, False)} | {e['top1']:.4f} |")
    out += ["", "Time per part (seconds over the same chunks):", "",
            "| model | total | " + " | ".join(next(iter(r["time"].values()))["parts"]) + " |",
            "|---|---:|" + "---:|" * len(next(iter(r["time"].values()))["parts"])]
    for name, t in r["time"].items():
        out.append(f"| {name} | {t['total']:.1f} | " + " | ".join(f"{v:.1f}" for v in t["parts"].values()) + " |")
    return "\n".join(out)


def ladder_section(record: dict) -> str:
    fp = record["fp32"]
    out = [f"## The bit ladder ({record['split']} split)\n", f"`{record.get('source')}`\n",
           f"{record['tokens']:,} {record['split']} tokens ({record['slice']}): each part alone, and all parts, at "
           f"{', '.join(map(str, BITS))} bits; weights dequantized and computed in fp32 (quality only, no speed "
           f"claimed), calls of {record['call_tokens']} tokens (exact for fp32 arithmetic: docs/method.md); "
           f"{_where(record)}. GPTQ's statistics: {(record.get('calibration') or {}).get('tokens', 0):,} training "
           f"tokens. fp32: loss {fmt_pm(fp['loss'], fp['loss_se'], 4, False)}, packed file {fp['file_mb']:.2f} MB.\n"]
    combos = sorted({(r["rounding"], r["group"] or 0) for r in record["rungs"]}, key=lambda c: (-c[1], c[0]))
    for rounding, g in combos:
        table = rung_table(record, rounding, g or None)
        bits = sorted({b for row in table.values() for b in row}, reverse=True)
        out += [f"### {rounding}, {'one scale per row' if not g else f'groups of {g}'}: KL(fp32 ‖ model), nats\n",
                "| part | " + " | ".join(f"{b} bits" for b in bits) + " |", "|---|" + "---:|" * len(bits)]
        for part, row in table.items():
            out.append(f"| {part} | " + " | ".join(fmt_pm(row[b]["kl"], row[b]["kl_se"], 5, False) if b in row else ""
                                                     for b in bits) + " |")
        out.append("")
        out += ["| top-1 / file MB | " + " | ".join(f"{b} bits" for b in bits) + " |", "|---|" + "---:|" * len(bits)]
        for part, row in table.items():
            out.append(f"| {part} | " + " | ".join(f"{row[b]['top1']:.3f} / {row[b]['file_mb']:.1f}" if b in row
                                                     else "" for b in bits) + " |")
        out.append("")
    return "\n".join(out)


def lowbit_section(recipe: dict, measured: dict | None) -> str:
    rule = lowbit_choice(recipe)
    out = ["## The smallest model that is still as good as the tutorial's\n", f"`{recipe.get('command', '')}`\n",
           f"Chosen on the first {recipe['tokens']:,} **{recipe['split']}** tokens ({rule}; {recipe['rule']}): "
           f"`{recipe['recipe']}`, predicted KL {recipe['predicted_kl']:.5f} at {recipe['predicted_mb']:.2f} MB.\n"]
    rows = {m.model: m for m in rows_of(measured)} if measured else {}
    low = rows.get("lowbit-mixed")
    if low and low.agreement:
        a, q = low.agreement, rows.get("qint8")
        out.append(f"Measured on the whole **test** split ({low.tokens:,} tokens, the run above): **{low.size_mb:.2f} "
                   f"MB**, KL **{fmt_pm(a.kl_mean, a.kl_mean_se, 5, False)}**, top-1 **{fmt_pm(a.top1, a.top1_se, 4, False)}**, "
                   f"loss {fmt_pm(low.loss_change, low.loss_change_se, 4)} nats"
                   + (f"; the tutorial's qint8: {q.size_mb:.1f} MB, KL {fmt_pm(q.agreement.kl_mean, q.agreement.kl_mean_se, 5, False)}, "
                      f"top-1 {fmt_pm(q.agreement.top1, q.agreement.top1_se, 4, False)}" if q and q.agreement else "") + ".\n")
    out += ["### The budget curve: the best plan for each size (predicted on validation)\n",
            "| budget MB | rounding | plan | predicted MB | predicted KL |", "|---:|---|---|---:|---:|"]
    for budget in BUDGETS:
        for rounding, front in sorted(recipe["fronts"].items()):
            fits = [f for f in front if f[0] <= budget]
            if fits:
                mb, kl, text = min(fits, key=lambda f: f[1])
                out.append(f"| {budget} | {rounding} | `{text.replace(' rounding=' + rounding, '')}` | {mb:.2f} | "
                           f"{kl:.5f} |")
    return "\n".join(out)


def results_markdown(store, checkpoint_sha256: str, recipe: dict | None = None) -> str:
    """docs/results.md: every shipped measurement of this checkpoint as tables."""
    parts = ["# Results\n", "Generated by `python -m wlm results --markdown > docs/results.md` from the records in "
             "`data/results/` (and `data/recipes/lowbit-mixed.json`); how each figure is measured: "
             "[method.md](method.md).\n"]
    measured = full_split(store, checkpoint_sha256)
    if measured:
        parts.append(measure_section(measured))
    insp = [r for r in store.inspections().all() if r.get("checkpoint_sha256") == checkpoint_sha256
            and r.get("slice") == FULL_SLICE]
    if insp:
        parts.append(inspection_section(max(insp, key=lambda r: r.get("when", ""))))
    for split in ("test", "valid"):
        lads = [r for r in store.ladders().all() if r.get("checkpoint_sha256") == checkpoint_sha256
                and r.get("split") == split]
        if lads:
            parts.append(ladder_section(max(lads, key=lambda r: r.get("when", ""))))
    if recipe:
        parts.append(lowbit_section(recipe, measured))
    return "\n\n".join(p.strip() for p in parts) + "\n"
