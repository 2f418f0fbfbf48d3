"""The "How low can it go" panel: the bit ladder (``wlm.ladder``) and the budget curve on the page.

What it shows, all read from stored records (nothing is computed when the page opens):
- the cliff: KL(fp32 || model) on a log axis against bits, one line per part and one for all
  parts together, for the rounding and grouping picked (the shipped ladder of the test split);
- the ladder as a table, every figure with its standard error;
- the budget curve: for each size of packed file, the least KL a plan can be predicted to have
  from the validation split's ladder (``wlm.recipe.front``), beside the 8-bit variants and the
  chosen ``lowbit-mixed`` as measured on the whole test split;
- what it finds, in a few sentences built from those figures.
Every low-bit figure is quality only: the weights are dequantized and computed in fp32.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from .ladder import rung_table
from .lowbit import BITS
from .palette import MODELS, PARTS, ROUNDINGS
from .recipe import LOWBIT_FILE, load_lowbit, lowbit_choice
from .results import rows_of
from .stats import fmt_pm
from .svgplot import lines_svg
from .variants import NO_SPEED

if TYPE_CHECKING:
    from .shared import Shared

ROUNDING_CHOICES = {"round to nearest (rtn)": "rtn", "clipped scale, least squared error (mse)": "mse",
                    "GPTQ: each rounding error compensated (gptq)": "gptq"}
GROUP_CHOICES = {"groups of 32 inputs, a scale each": 32, "one scale per row": None}
DEFAULT_ROUNDING, DEFAULT_GROUP = "round to nearest (rtn)", "groups of 32 inputs, a scale each"
TABLE_COLUMNS = ["part", "bits", "KL (nats)", "loss change (nats)", "top-1 agree", "packed file MB"]
# what the panel's events return, in this order (demo.py wires the components in the same order)
OUTPUTS = ("summary", "cliff", "table", "budget", "budget_note")
LINE_COLORS = {"embedding": PARTS["embedding"], "decoder": PARTS["decoder"], "all parts": "#8c6bb1",
               "lstm.0": "#9ecae9", "lstm.1": "#6baed6", "lstm.2": "#4c78a8", "lstm.3": "#3e6fb0", "lstm.4": "#2a5599"}
INTRO = """Each part of the model, and all of them together, at 8 down to 2 bits: every weight rounded to a
symmetric integer grid (qmax = 2^(bits-1) - 1 levels each side of 0) with one float16 scale per row, or per group
of 32 inputs. *Round to nearest* takes the scale from the largest weight; *mse* clips the scale where the squared
error is least; *GPTQ* also pushes each column's rounding error onto the columns not yet rounded, weighted by the
inputs' statistics from 100,000 training tokens, so the layer's output stays close. The sizes are the bytes of the
packed file (`python -m wlm export`). """ + NO_SPEED[0].upper() + NO_SPEED[1:] + "."
REAL_4BIT = """ One low-bit model here has a real speed: **ort-int4** in the top dropdown, ONNX Runtime's own
packed 4-bit kernels for the decoder and the embedding (`MatMulNBits`, `GatherBlockQuantized`, groups of 32), the
LSTM in int8."""


def _pm(v, se, digits):
    return fmt_pm(v, se, digits, sign=False)


class LadderPanel:
    """The "How low can it go" panel of ``app`` (a ``wlm.shared.Shared``)."""

    def __init__(self, app: "Shared"):
        self.app = app

    def intro(self) -> str:
        """The panel's opening text; it points to ort-int4 where this server offers it."""
        return INTRO + (REAL_4BIT if "ort-int4" in self.app.choices else "")

    # ------------------------------------------------------------------ the records
    def ladder(self) -> dict | None:
        """The newest stored ladder of the test split for this checkpoint (shipped or measured)."""
        return self.app.ladders.find(split="test", checkpoint_sha256=self.app.ckpt.sha256)

    def recipe(self) -> dict | None:
        try:
            return load_lowbit(LOWBIT_FILE, self.app.ckpt.sha256)
        except ValueError:
            return None

    def measured(self) -> dict | None:
        """The full-split measurement shown when the page opens (for the measured points)."""
        return self.app.full_split_record()

    # ------------------------------------------------------------------ the view
    def initial(self) -> tuple:
        return self.view(DEFAULT_ROUNDING, DEFAULT_GROUP)

    def view(self, rounding_label=DEFAULT_ROUNDING, group_label=DEFAULT_GROUP) -> tuple:
        """The panel's outputs (``OUTPUTS`` order) for one rounding and grouping."""
        if rounding_label not in ROUNDING_CHOICES:
            raise ValueError(f"rounding must be one of {', '.join(ROUNDING_CHOICES)}, got {rounding_label!r}")
        if group_label not in GROUP_CHOICES:
            raise ValueError(f"grouping must be one of {', '.join(GROUP_CHOICES)}, got {group_label!r}")
        rounding, group = ROUNDING_CHOICES[rounding_label], GROUP_CHOICES[group_label]
        record = self.ladder()
        budget, note = self.budget()
        if not record:
            empty = "no ladder stored yet: python -m wlm bits --save-to data/results"
            return ("No bit ladder is stored for this checkpoint yet: `python -m wlm bits --save-to data/results`.",
                    lines_svg({}, "bits", "KL (nats)", "KL against bits", empty=empty),
                    pd.DataFrame(columns=TABLE_COLUMNS), budget, note)
        table = rung_table(record, rounding, group)
        if rounding == "gptq" and "embedding" not in table:      # a lookup: gptq rounds it as mse does
            mse = rung_table(record, "mse", group).get("embedding")
            if mse:
                table = {"embedding": mse, **table}
        return (self.summary(record, rounding, group, table), self.cliff_svg(record, rounding, group, table),
                self.table(table), budget, note)

    def cliff_svg(self, record: dict, rounding: str, group: int | None, table: dict) -> str:
        series, errors = {}, {}
        for part, row in table.items():
            name = "all parts" if part == "all" else part
            bits = sorted(row, reverse=True)
            series[name] = [(b, row[b]["kl"]) for b in bits]
            errors[name] = [1.96 * row[b]["kl_se"] if row[b]["kl_se"] else None for b in bits]
        g = "per row" if group is None else f"groups of {group}"
        title = f"KL against bits: {rounding}, {g}"
        if not series:
            return lines_svg({}, "bits", "KL", title, empty=f"this ladder has no {rounding} rungs {g}")
        return lines_svg(series, "bits per weight", "KL(fp32 ‖ model), nats", title,
                         LINE_COLORS, log_y=True, reverse_x=True, x_ticks=list(BITS), errors=errors, marks=True,
                         dashed={"all parts"})

    @staticmethod
    def table(table: dict) -> pd.DataFrame:
        rows = []
        for part, row in table.items():
            for b in sorted(row, reverse=True):
                r = row[b]
                rows.append([part, b, _pm(r["kl"], r["kl_se"], 5), fmt_pm(r["dloss"], r["dloss_se"], 4),
                             _pm(r["top1"], r["top1_se"], 4), round(r["file_mb"], 2)])
        return pd.DataFrame(rows, columns=TABLE_COLUMNS)

    def summary(self, record: dict, rounding: str, group: int | None, table: dict) -> str:
        """What the ladder shows, from its figures."""
        g = "one scale per row" if group is None else f"groups of {group}"
        parts = [p for p in table if p != "all"]
        out = [f"**{record['tokens']:,} test tokens**, {rounding}, {g}; KL(fp32 ‖ model) per token, ± one standard "
               f"error. {NO_SPEED[0].upper() + NO_SPEED[1:]}."
               + (" The embedding is a lookup, with no inputs whose error GPTQ could compensate: it is rounded as "
                  "mse." if rounding == "gptq" else "")]
        if all(8 in table[p] for p in parts) and parts:
            worst8 = max(parts, key=lambda p: table[p][8]["kl"])
            out.append(f"At **8 bits** no part matters much: the worst, {worst8}, costs KL "
                       f"{_pm(table[worst8][8]['kl'], table[worst8][8]['kl_se'], 5)}.")
        for b in (4, 3, 2):
            have = [p for p in parts if b in table[p]]
            if len(have) < 2:
                continue
            first = max(have, key=lambda p: table[p][b]["kl"])
            best = min(have, key=lambda p: table[p][b]["kl"])
            line = (f"At **{b} bits** the part that breaks first is **{first}** (KL "
                    f"{_pm(table[first][b]['kl'], table[first][b]['kl_se'], 4)}, top-1 {table[first][b]['top1']:.1%}); "
                    f"{best} holds best ({_pm(table[best][b]['kl'], table[best][b]['kl_se'], 5)}).")
            if "all" in table and b in table["all"]:
                a = table["all"][b]
                line += f" All parts at {b} bits: KL {_pm(a['kl'], a['kl_se'], 4)}, top-1 {a['top1']:.1%}."
            out.append(line)
        rtn, gptq = rung_table(record, "rtn", group), rung_table(record, "gptq", group)
        if "decoder" in rtn and "decoder" in gptq and 3 in rtn["decoder"] and 3 in gptq["decoder"]:
            a, b = rtn["decoder"][3]["kl"], gptq["decoder"][3]["kl"]
            out.append(f"Rounding matters most where it breaks: the decoder at 3 bits has KL {a:.4f} by round to "
                       f"nearest and {b:.4f} by GPTQ ({a / b:.1f}x less).")
        out.append("Build your own mix in **Your recipe**, and write with it.")
        return " ".join(out)

    def budget(self) -> tuple[str, str]:
        """(the budget curve, what it says): the least predicted KL for each size, from the validation
        ladder, with the 8-bit variants and ``lowbit-mixed`` measured on the whole test split."""
        recipe, measured = self.recipe(), self.measured()
        title = "The least KL for each file size"
        if not recipe:
            return (lines_svg({}, "MB", "KL", title, empty="no low-bit recipe derived yet"),
                    "No low-bit recipe has been derived for this checkpoint yet (`python -m wlm bits --split valid "
                    "--derive-recipe`).")
        series = {f"best plan, {r}": [(mb, kl) for mb, kl, _ in f if kl > 0]
                  for r, f in recipe["fronts"].items() if r in ("rtn", "gptq")}
        colors = {f"best plan, {r}": ROUNDINGS[r] for r in ROUNDINGS}
        points = []
        rows = {m.model: m for m in rows_of(measured)} if measured else {}
        for name, m in rows.items():          # fp16 and ort-fp32 keep fp32's size: not what this is about
            if name not in ("fp32", "fp16", "ort-fp32") and m.agreement and m.agreement.kl_mean > 0:
                points.append((name, m.size_mb, m.agreement.kl_mean))
                colors[name] = MODELS.get(name, "#888888")
        svg = lines_svg(series, "file, MB", "KL(fp32 ‖ model), nats", title, colors,
                        log_y=True, log_x=True, points=points, dashed=set(series),
                        x_ticks=[5, 10, 20, 50, 120], point_labels={"lowbit-mixed", "qint8", "ort-int4"})
        tokens = f" ({measured['tokens']:,} predicted tokens)" if measured and measured.get("tokens") else ""
        note = [f"Lines (predicted): for each size, the plan with the least KL predicted from the single-part rungs of the "
                f"first {recipe['tokens']:,} **validation** tokens (parts' KLs added up; {recipe['rule']}). Points: "
                f"measured on the whole **test** split{tokens}, KL ± one standard error in the Measure table. Both axes "
                f"are logarithmic."]
        low = rows.get("lowbit-mixed")
        if low and low.agreement:
            a = low.agreement
            q = rows.get("qint8")
            vs = (f", against the tutorial's qint8 at {q.size_mb:.1f} MB and KL {q.agreement.kl_mean:.4f}"
                  if q and q.agreement else "")
            note.append(f"**lowbit-mixed** (`{recipe['recipe']}`), {lowbit_choice(recipe)}: "
                        f"{low.size_mb:.2f} MB, KL {_pm(a.kl_mean, a.kl_mean_se, 5)}, top-1 "
                        f"{_pm(a.top1, a.top1_se, 4)} on the test split{vs}; predicted on validation: KL "
                        f"{recipe['predicted_kl']:.5f}, {recipe['predicted_mb']:.2f} MB.")
        else:
            note.append(f"**lowbit-mixed** (`{recipe['recipe']}`), {lowbit_choice(recipe)}: predicted "
                        f"KL {recipe['predicted_kl']:.5f} at {recipe['predicted_mb']:.2f} MB (not yet measured on the "
                        f"test split here).")
        return svg, " ".join(note)
