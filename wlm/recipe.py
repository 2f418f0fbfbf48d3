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

The record also says whether the choice beats the runner-up (the next plan by the same rule)
by more than the noise: the difference of their predicted KLs against 1.96 times its standard
error, from the covariance of the single-part KL means the analysis measured on the same
tokens (``sensitivity_kl_cov``; a sum of means has the error of the sum, shared text included).

The shipped plan is data (``data/recipes/qint8-mixed.json``, with what it was derived from
and the sha256 of the checkpoint it was derived on) and offered as the variant
``qint8-mixed`` (``wlm.variants``). ``python -m wlm inspect --derive-recipe`` derives a plan
again and writes it to a new file named by the plan (``plan_sha256``), never over the shipped
one unless told to (``--replace-recipe``); ``load_plan`` refuses a plan derived on another
checkpoint.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import math
import os
from pathlib import Path

from . import layerwise as lw
from . import stats
from .model import part_names
from .storage import write_json

RECIPE_FILE = Path(__file__).resolve().parent.parent / "data" / "recipes" / "qint8-mixed.json"
DEFAULT_BUDGET_MB = 31.0
FORMAT = "wlm-recipe/1"


def ranked(kl: dict[tuple[str, str], float], sizes: dict[str, dict[str, float]], budget_mb: float,
           overhead_mb: float = 0.0, top: int = 2) -> list[tuple[dict[str, str], float, float]]:
    """The ``top`` plans within ``budget_mb`` by the rule (least predicted KL; on a tie, the
    smaller), best first, as (plan, predicted KL, predicted MB); ValueError when none fits."""
    names = list(sizes)
    fits = []
    for options in itertools.product(*(sizes[p] for p in names)):
        mb = overhead_mb + sum(sizes[p][o] for p, o in zip(names, options))
        if mb > budget_mb:
            continue
        pred = sum(kl[(p, o)] for p, o in zip(names, options) if o != "fp32")
        fits.append(((pred, mb), dict(zip(names, options))))
    if not fits:
        smallest = overhead_mb + sum(min(v.values()) for v in sizes.values())
        raise ValueError(f"budget must be at least {smallest:.2f} MB (every part at its smallest), got {budget_mb}")
    fits.sort(key=lambda f: f[0])
    return [(plan, pred, mb) for (pred, mb), plan in fits[:top]]


def choose(kl: dict[tuple[str, str], float], sizes: dict[str, dict[str, float]], budget_mb: float,
           overhead_mb: float = 0.0) -> tuple[dict[str, str], float, float]:
    """The plan of least predicted KL within ``budget_mb`` (see the module's docstring).

    Args:
        kl: (part, option) -> KL with that part alone quantized (fp32 options count 0).
        sizes: part -> option -> MB.
        overhead_mb: the whole model's size minus its parts' (may be negative).
    Returns (plan, predicted KL, predicted MB). ValueError when no plan fits the budget.
    """
    return ranked(kl, sizes, budget_mb, overhead_mb, top=1)[0]


def margin(choice: dict[str, str], other: dict[str, str], sensitivity: list[dict],
           cov: list[list[float]] | None) -> tuple[float, float | None]:
    """``other``'s predicted KL minus ``choice``'s, and its standard error from ``cov`` (the
    covariance of the single-part KL means, in the order of ``sensitivity``; None: unknown)."""
    index = {(s["part"], s["option"]): k for k, s in enumerate(sensitivity)}
    w = [0.0] * len(sensitivity)
    for plan, sign in ((other, 1.0), (choice, -1.0)):
        for part, option in plan.items():
            if option != "fp32":
                w[index[(part, option)]] += sign
    diff = sum(wk * s["kl"] for wk, s in zip(w, sensitivity))
    if cov is None:
        return diff, None
    var = sum(w[i] * w[j] * cov[i][j] for i in range(len(w)) for j in range(len(w)))
    return diff, math.sqrt(max(0.0, var))


def derive(report: dict, budget_mb: float = DEFAULT_BUDGET_MB, overhead_mb: float = 0.0) -> dict:
    """A recipe record from an inspection report (``Inspection.report()``), with the runner-up
    and whether the choice beats it by more than the noise (None: the report has no errors)."""
    kl = {(s["part"], s["option"]): s["kl"] for s in report["sensitivity"]}
    sizes = {p: dict(v) for p, v in report["part_sizes_mb"].items()}
    for p, options in list(sizes.items()):     # only options whose alone KL was measured (fp32 is 0)
        sizes[p] = {o: mb for o, mb in options.items() if o == "fp32" or (p, o) in kl}
    (plan, pred_kl, pred_mb), *rest = ranked(kl, sizes, budget_mb, overhead_mb, top=2)
    record = {"format": FORMAT, "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "plan": plan, "plan_sha256": plan_sha256(plan), "budget_mb": budget_mb, "predicted_kl": pred_kl,
              "predicted_mb": pred_mb, "tokens": report["tokens"],
              "rule": "least summed single-part KL within the size budget",
              "sensitivity": report["sensitivity"], "part_sizes_mb": report["part_sizes_mb"],
              "runner_up": None, "margin_kl": None, "margin_kl_se": None, "beats_runner_up_beyond_noise": None}
    if rest:
        other, other_kl, other_mb = rest[0]
        diff, se = margin(plan, other, report["sensitivity"], report.get("sensitivity_kl_cov"))
        record.update(runner_up={"plan": other, "predicted_kl": other_kl, "predicted_mb": other_mb},
                      margin_kl=diff, margin_kl_se=se,
                      beats_runner_up_beyond_noise=None if se is None else diff > stats.Z95 * se)
    return record


def verdict(recipe: dict) -> str:
    """One line: the choice against the runner-up, and whether the difference is beyond noise."""
    r = recipe.get("runner_up")
    if not r:
        return "no other plan fits the budget"
    changed = ", ".join(f"{p} {o} (runner-up: {r['plan'][p]})" for p, o in recipe["plan"].items()
                        if r["plan"][p] != o)
    head = (f"the runner-up differs in {changed}; its predicted KL is higher by "
            f"{stats.fmt_pm(recipe['margin_kl'], recipe.get('margin_kl_se'), 6, False)}")
    if recipe.get("beats_runner_up_beyond_noise") is None:
        return head + " (no standard error: the analysis has none)"
    return head + (": the choice is better beyond noise (95%)" if recipe["beats_runner_up_beyond_noise"]
                   else ": within noise, the two are not distinguishable on these tokens")


def plan_sha256(path_or_plan: str | os.PathLike | dict) -> str:
    """The sha256 of a plan (a part -> option dict, a recipe record, or a recipe file): of its
    JSON with sorted keys, so the same plan has the same key wherever it was written."""
    if isinstance(path_or_plan, dict) and isinstance(path_or_plan.get("recipe"), str):
        return hashlib.sha256(path_or_plan["recipe"].encode()).hexdigest()      # a low-bit recipe: its text
    if isinstance(path_or_plan, dict):
        plan = path_or_plan["plan"] if isinstance(path_or_plan.get("plan"), dict) else path_or_plan
    else:
        plan = _record(path_or_plan)["plan"]
    text = json.dumps({str(k): str(v) for k, v in plan.items()}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def derived_path(plan: dict[str, str], folder: str | os.PathLike = RECIPE_FILE.parent) -> Path:
    """Where a derived plan goes by default: ``qint8-mixed-<first 12 of its sha256>.json`` in
    ``folder``, beside the shipped recipe and never over it."""
    return Path(folder) / f"{RECIPE_FILE.stem}-{plan_sha256(plan)[:12]}.json"


def save(recipe: dict, path: str | os.PathLike = RECIPE_FILE) -> Path:
    return write_json(path, recipe)


def _record(path: str | os.PathLike) -> dict:
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"no usable recipe at {path} ({e}); derive one with `python -m wlm inspect "
                         f"--derive-recipe`") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT or not isinstance(record.get("plan"), dict):
        raise ValueError(f"{path} is not a wlm recipe (format "
                         f"{record.get('format') if isinstance(record, dict) else None!r})")
    return record


def load_plan(path: str | os.PathLike = RECIPE_FILE, checkpoint_sha256: str | None = None) -> dict[str, str]:
    """The plan of a recipe file; ValueError with the reason when it cannot be used, among them
    a plan derived on another checkpoint than ``checkpoint_sha256`` (when given; a record
    that names no checkpoint is taken as it is)."""
    record = _record(path)
    derived_on = record.get("checkpoint_sha256")
    if checkpoint_sha256 is not None and derived_on is not None and derived_on != checkpoint_sha256:
        raise ValueError(f"{path} was derived on checkpoint sha256 {derived_on[:12]}..., not on this one "
                         f"({checkpoint_sha256[:12]}...): its plan follows that model's sensitivities; derive one "
                         f"for this checkpoint with `python -m wlm inspect --derive-recipe`")
    return record["plan"]


def page_note(path: str | os.PathLike = RECIPE_FILE) -> str:
    """What the page says of the recipe ``qint8-mixed`` follows: its plan, its prediction and the
    verdict against the runner-up ("" when there is no usable recipe)."""
    try:
        r = _record(path)
    except ValueError:
        return ""
    line = (f"**The recipe `qint8-mixed` follows** ({r.get('rule', 'derived by the analysis')}, within "
            f"{r.get('budget_mb', '?')} MB, from {r.get('tokens', 0):,} test tokens): {describe(r['plan'])}. "
            f"Predicted KL {r.get('predicted_kl', float('nan')):.6f}, {r.get('predicted_mb', float('nan')):.1f} MB.")
    if "runner_up" in r:
        line += f" Against the next best plan: {verdict(r)}."
    return line


def describe(plan: dict[str, str]) -> str:
    """One line: which parts are in which precision."""
    groups: dict[str, list[str]] = {}
    for part, option in plan.items():
        groups.setdefault(option, []).append(part)
    return "; ".join(f"{', '.join(ps)}: {lw.OPTIONS[o].split(',')[0] if o != 'fp32' else 'fp32'}"
                     for o, ps in groups.items())


# ------------------------------------------------------------------ below 8 bits
LOWBIT_FILE = RECIPE_FILE.parent / "lowbit-mixed.json"
LOWBIT_FORMAT = "wlm-lowbit-recipe/1"
LOWBIT_RULE = ("least summed single-part KL within the size budget (the packed file's bytes), over every part's "
               "measured rungs, one rounding for all parts")
LOWBIT_TARGET_RULE = ("the smallest packed file whose summed single-part KL is within the target, over every part's "
                      "measured rungs, one rounding for all parts")


def part_options(record: dict, rounding: str) -> dict[str, list[tuple[str, float, float]]]:
    """part -> [(precision text, KL alone, MB the packed file grows by)] from a ladder record's
    single-part rungs of ``rounding`` (the embedding's ``mse`` ones under ``gptq``: wlm.lowbit),
    fp32 first at (0, 0)."""
    from .lowbit import Precision
    base = record["fp32"]["file_mb"]
    out: dict[str, list[tuple[str, float, float]]] = {}
    for r in record["rungs"]:
        if r["part"] == "all":
            continue
        want = "mse" if rounding == "gptq" and r["part"] == "embedding" else rounding
        if r["rounding"] != want:
            continue
        out.setdefault(r["part"], [("fp32", 0.0, 0.0)]).append(
            (Precision(r["bits"], r["group"]).text, r["kl"], r["file_mb"] - base))
    return out


def front(options: dict[str, list[tuple[str, float, float]]], base_mb: float) -> list[tuple[float, float, dict]]:
    """The plans no other plan beats in both size and predicted KL, smallest first, as (MB, KL, plan):
    the parts merged one at a time, each time keeping only that Pareto front (exact: a plan
    off the front of its first parts cannot get onto it by adding more parts)."""
    plans = [(base_mb, 0.0, {})]
    for part, opts in options.items():
        merged = sorted(((mb + d, kl + k, {**plan, part: text}) for mb, kl, plan in plans for text, k, d in opts),
                        key=lambda t: (t[0], t[1]))
        plans, best = [], float("inf")
        for mb, kl, plan in merged:
            if kl < best:
                plans.append((mb, kl, plan))
                best = kl
    return plans


def thin(plans: list, step: float = 0.005) -> list:
    """A front with at most one plan per ``step`` of relative size after its smallest (0.5%: a few
    hundred plans, not thousands a few bytes apart), keeping in each the plan of least KL (the
    last, on a front)."""
    out, anchor = [], None
    for plan in plans:
        if anchor is not None and len(out) > 1 and plan[0] <= anchor * (1 + step):
            out[-1] = plan
        else:
            out.append(plan)
            anchor = plan[0]
    return out


def derive_lowbit(record: dict, budget_mb: float | None = None, target_kl: float | None = None) -> dict:
    """The recipe of least predicted KL within ``budget_mb`` (or, with ``target_kl``, the smallest
    whose predicted KL is at most that) from a ladder record (``wlm.ladder``), over each rounding,
    with each rounding's front (the budget curve); ValueError when no plan fits."""
    if (budget_mb is None) == (target_kl is None):
        raise ValueError("give one of budget_mb and target_kl")
    from .lowbit import Precision, Recipe
    nlayers = sum(1 for p in {r["part"] for r in record["rungs"]} if p.startswith("lstm."))
    names = part_names(nlayers)
    fronts, best = {}, None
    for rounding in sorted({r["rounding"] for r in record["rungs"]}):
        options = part_options(record, rounding)
        if set(options) != set(names):
            continue                                  # a ladder without every part cannot make a whole plan
        f = front(options, record["fp32"]["file_mb"])
        text = lambda plan: Recipe(tuple((n, Precision.parse(plan[n], n)) for n in names), rounding).text  # noqa: E731
        fronts[rounding] = [[round(mb, 4), kl, text(plan)] for mb, kl, plan in thin(f)]
        if target_kl is None:
            fits = [(kl, mb, text(plan)) for mb, kl, plan in f if mb <= budget_mb]
        else:
            fits = [(mb, kl, text(plan)) for mb, kl, plan in f if kl <= target_kl]
        if fits and (best is None or min(fits)[0] < best[0]):
            best = min(fits)
    if best is None:
        if not fronts:
            raise ValueError("the ladder has no rounding with every part measured")
        if target_kl is not None:
            raise ValueError(f"no plan of this ladder is predicted at a KL of {target_kl} or less")
        smallest = min(f[0][0] for f in fronts.values())
        raise ValueError(f"budget must be at least {smallest:.2f} MB (the smallest plan of this ladder), got "
                         f"{budget_mb}")
    kl, mb, text = best if target_kl is None else (best[1], best[0], best[2])
    return {"format": LOWBIT_FORMAT, "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "recipe": text, "recipe_sha256": plan_sha256({"recipe": text}),
            "budget_mb": budget_mb, "target_kl": target_kl,
            "predicted_kl": kl, "predicted_mb": mb,
            "rule": LOWBIT_RULE if target_kl is None else LOWBIT_TARGET_RULE, "split": record["split"],
            "slice": record["slice"], "tokens": record["tokens"], "nlayers": nlayers,
            "checkpoint_sha256": record["checkpoint_sha256"],
            "calibration_sha256": record.get("calibration_sha256"), "fronts": fronts}


def lowbit_choice(recipe: dict) -> str:
    """How a low-bit recipe record was chosen, in words: "within 18 MB" or "the smallest at KL <= 0.003"."""
    if recipe.get("target_kl") is not None:
        return f"the smallest packed file predicted at KL {recipe['target_kl']:g} or less"
    return f"the least KL predicted within {recipe['budget_mb']:g} MB"


def lowbit_derived_path(recipe_text: str, folder: str | os.PathLike = RECIPE_FILE.parent) -> Path:
    return Path(folder) / f"{LOWBIT_FILE.stem}-{plan_sha256({'recipe': recipe_text})[:12]}.json"


def load_lowbit(path: str | os.PathLike = LOWBIT_FILE, checkpoint_sha256: str | None = None) -> dict:
    """A low-bit recipe record; ValueError with the reason when it cannot be used (among them one
    derived on another checkpoint than ``checkpoint_sha256``)."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"no usable low-bit recipe at {path} ({e}); derive one with `python -m wlm bits --split "
                         f"valid --derive-recipe`") from None
    if not isinstance(record, dict) or record.get("format") != LOWBIT_FORMAT or not isinstance(record.get("recipe"),
                                                                                                  str):
        raise ValueError(f"{path} is not a wlm low-bit recipe")
    derived_on = record.get("checkpoint_sha256")
    if checkpoint_sha256 is not None and derived_on is not None and derived_on != checkpoint_sha256:
        raise ValueError(f"{path} was derived on checkpoint sha256 {derived_on[:12]}..., not on this one "
                         f"({checkpoint_sha256[:12]}...); derive one for this checkpoint with `python -m wlm bits "
                         f"--split valid --derive-recipe`")
    return record
