"""The "Your recipe" panel: a visitor picks each part's bits and grouping (or a preset) and a
rounding, and gets at once the recipe's packed size and a quick quality against fp32; then it can
write with it in the side by side (the right pane is that recipe) and score text with it.

The recipe is built and measured by what the panels share (``wlm.recipes`` through
``wlm.shared.Shared``): one build at a time, in a CPU turn of its own, at most a few kept.
"""
from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Callable

from .lowbit import BITS, ROUNDINGS, Precision, Recipe
from .model import part_names
from .palette import MODULE_LABELS
from .recipes import NAME_PREFIX, PRESETS, QUICK_TOKENS
from .results import rows_of
from .stats import fmt_pm
from .variants import NO_SPEED

if TYPE_CHECKING:
    from .shared import Shared

PRECISIONS = ["fp32"] + [Precision(b, g).text for b in BITS for g in (32, 128, None)]
DEFAULT_PRESET = "the hand-picked mix: embedding 4, LSTM 6, decoder 5 bits, groups of 32"
# what the Build event returns, in this order (demo.py wires the components in the same order)
OUTPUTS = ("status", "variant_choices", "variant")
INTRO = f"""Give each part a width (2 to 8 bits) and a grouping (one scale per row, or per group of 32 or 128
inputs), or start from a preset, then **Build and measure**: its packed file's real size, and its quality against
fp32 on the first {QUICK_TOKENS:,} test tokens. **Write with it** puts it in the side by side's right pane (and
Your text can score with it). At 2 bits the text falls apart within a few words: that is the lesson. {NO_SPEED[0].upper()
+ NO_SPEED[1:]}."""


class RecipePanel:
    """The "Your recipe" panel of ``app`` (a ``wlm.shared.Shared``)."""

    def __init__(self, app: "Shared"):
        self.app = app
        self.parts = part_names(app.ckpt.model.config.nlayers)

    def preset(self, label) -> tuple:
        """Each part's precision and the rounding of a preset (``wlm.recipes.PRESETS``)."""
        if label == "lowbit-mixed (the shipped smallest)":
            text = self.shipped_text()
        elif isinstance(label, str) and label in PRESETS:
            text = PRESETS[label]
        else:
            raise ValueError(f"preset must be one of {', '.join(self.presets())}, got {label!r}")
        recipe = Recipe.parse(text, len(self.parts) - 2)
        return (*[p.text for _, p in recipe.parts], recipe.rounding)

    def presets(self) -> list[str]:
        return list(PRESETS) + (["lowbit-mixed (the shipped smallest)"] if self.shipped_text() else [])

    def shipped_text(self) -> str:
        from .recipe import LOWBIT_FILE, load_lowbit
        try:
            return load_lowbit(LOWBIT_FILE, self.app.ckpt.sha256)["recipe"]
        except ValueError:
            return ""

    def text(self, *values) -> str:
        """The recipe's text from the panel's controls: each part's precision, then the rounding."""
        *precisions, rounding = values
        if len(precisions) != len(self.parts):
            raise ValueError(f"the recipe needs a precision for each of {', '.join(self.parts)}")
        if rounding not in ROUNDINGS:
            raise ValueError(f"rounding must be one of {', '.join(ROUNDINGS)}, got {rounding!r}")
        return " ".join(f"{p}={v}" for p, v in zip(self.parts, precisions)) + f" rounding={rounding}"

    def build(self, *values, progress: Callable[[int, int], None] | None = None) -> tuple:
        """Build and measure the recipe the controls say: (status, the variant choices with it, its name)."""
        name = self.app.variant_arg(NAME_PREFIX + self.text(*values))
        record = self.app.quick_quality(name, progress=progress)
        return self.status(name, record), [*self.app.choices, name], name

    def versus_qint8(self) -> str:
        """The tutorial's qint8 as the stored full-split measurement has it ("" without one)."""
        full = self.app.full_split_record()
        q = next((m for m in rows_of(full) if m.model == "qint8"), None) if full else None
        if not (q and q.agreement):
            return ""
        tokens = f" ({full['tokens']:,} tokens)" if full.get("tokens") else ""
        return (f"The tutorial's qint8 has KL {q.agreement.kl_mean:.4f} and top-1 {q.agreement.top1:.3f} on the whole "
                f"test split{tokens}.")

    def status(self, name: str, record: dict) -> str:
        fp, q = record["rows"][0], record["rows"][1]
        a = q["agreement"]
        text = name[len(NAME_PREFIX):]
        recipe = self.app.recipes.recipe(name)
        mods = ", ".join(f"{MODULE_LABELS.get(part, part)} {mb:.2f} MB" for part, mb in q["modules_mb"].items())
        se = q.get("loss_change_se")
        lines = [f"**{q['size_mb']:.2f} MB** packed file ({fp['size_mb'] / q['size_mb']:.1f}x smaller than fp32's "
                 f"{fp['size_mb']:.1f} MB; {mods}; the rest is the header and the vocabulary).",
                 f"On the first {q['tokens']:,} test tokens against fp32: KL **{fmt_pm(a['kl_mean'], a.get('kl_mean_se'), 4, False)}**"
                 f" nats, top-1 **{fmt_pm(a['top1'], a.get('top1_se'), 3, False)}**, loss "
                 f"{fmt_pm(q['loss_change'], se)} nats (perplexity {fp['ppl']:.1f} → {q['ppl']:.1f}). "
                 + self.versus_qint8(),
                 f"{NO_SPEED[0].upper() + NO_SPEED[1:]}. Rounding: {recipe.rounding}.",
                 f"The same file from the command line: `python -m wlm export --recipe {shlex.quote(text)} "
                 f"--out my-recipe.safetensors`. **Write with it** puts it in the side by side."]
        return "\n\n".join(lines)
