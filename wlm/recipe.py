"""A mixed-precision recipe that the analysis chooses, under a size budget.

The rule (``choose``): every part gets one of its options (``wlm.layerwise.PART_OPTIONS``:
the embedding fp32 or 8-bit rows; each LSTM layer fp32 or int8; the decoder fp32, int8 per
tensor or per channel). A plan's KL is predicted as the sum, over its quantized parts, of the
KL(fp32 || model) measured with that part alone quantized (``wlm.inspection``: the parts'
errors add up nearly, as the end-to-end KL shows), and its size as the sum of its parts'
sizes (each part's ``torch.save`` bytes, plus the few bytes the whole file has more or less
than its parts). Of all plans (2 x 2^5 x 3 = 192 here) within the budget, the rule takes the
one with the least predicted KL; on a tie, the smaller. Nothing is hand-picked: change the
checkpoint, the budget or the tokens, and the plan follows.

The chosen plan is written as data (``data/recipes/qint8-mixed.json``, with what it was
derived from) and offered as the variant ``qint8-mixed`` (``wlm.variants``);
``python -m wlm inspect --derive-recipe`` derives it again.
"""
from __future__ import annotations

import datetime as dt
import itertools
import json
import os
from pathlib import Path

from . import layerwise as lw
from .storage import write_json

RECIPE_FILE = Path(__file__).resolve().parent.parent / "data" / "recipes" / "qint8-mixed.json"
DEFAULT_BUDGET_MB = 31.0
FORMAT = "wlm-recipe/1"


def choose(kl: dict[tuple[str, str], float], sizes: dict[str, dict[str, float]], budget_mb: float,
           overhead_mb: float = 0.0) -> tuple[dict[str, str], float, float]:
    """The plan of least predicted KL within ``budget_mb`` (see the module's docstring).

    Args:
        kl: (part, option) -> KL with that part alone quantized (fp32 options count 0).
        sizes: part -> option -> MB.
        overhead_mb: the whole model's size minus its parts' (may be negative).
    Returns (plan, predicted KL, predicted MB). ValueError when no plan fits the budget.
    """
    part_names = list(sizes)
    best = None
    for options in itertools.product(*(sizes[p] for p in part_names)):
        mb = overhead_mb + sum(sizes[p][o] for p, o in zip(part_names, options))
        if mb > budget_mb:
            continue
        pred = sum(kl[(p, o)] for p, o in zip(part_names, options) if o != "fp32")
        key = (pred, mb)
        if best is None or key < best[0]:
            best = (key, dict(zip(part_names, options)))
    if best is None:
        smallest = overhead_mb + sum(min(v.values()) for v in sizes.values())
        raise ValueError(f"budget must be at least {smallest:.2f} MB (every part at its smallest), got {budget_mb}")
    (pred, mb), plan = best
    return plan, pred, mb


def derive(report: dict, budget_mb: float = DEFAULT_BUDGET_MB, overhead_mb: float = 0.0) -> dict:
    """A recipe record from an inspection report (``Inspection.report()``)."""
    kl = {(s["part"], s["option"]): s["kl"] for s in report["sensitivity"]}
    sizes = {p: dict(v) for p, v in report["part_sizes_mb"].items()}
    for p, options in list(sizes.items()):     # only options whose alone KL was measured (fp32 is 0)
        sizes[p] = {o: mb for o, mb in options.items() if o == "fp32" or (p, o) in kl}
    plan, pred_kl, pred_mb = choose(kl, sizes, budget_mb, overhead_mb)
    return {"format": FORMAT, "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "plan": plan, "budget_mb": budget_mb, "predicted_kl": pred_kl, "predicted_mb": pred_mb,
            "tokens": report["tokens"], "rule": "least summed single-part KL within the size budget",
            "sensitivity": report["sensitivity"], "part_sizes_mb": report["part_sizes_mb"]}


def save(recipe: dict, path: str | os.PathLike = RECIPE_FILE) -> Path:
    return write_json(path, recipe)


def load_plan(path: str | os.PathLike = RECIPE_FILE) -> dict[str, str]:
    """The plan of a recipe file; ValueError with the reason when it cannot be used."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"no usable recipe at {path} ({e}); derive one with `python -m wlm inspect "
                         f"--derive-recipe`") from None
    if record.get("format") != FORMAT or not isinstance(record.get("plan"), dict):
        raise ValueError(f"{path} is not a wlm recipe (format {record.get('format')!r})")
    return record["plan"]


def describe(plan: dict[str, str]) -> str:
    """One line: which parts are in which precision."""
    groups: dict[str, list[str]] = {}
    for part, option in plan.items():
        groups.setdefault(option, []).append(part)
    return "; ".join(f"{', '.join(ps)}: {lw.OPTIONS[o].split(',')[0] if o != 'fp32' else 'fp32'}"
                     for o, ps in groups.items())
