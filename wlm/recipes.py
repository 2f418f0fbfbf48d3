"""A visitor's own low-bit recipes: built on request, kept while they are used, and measured
quickly, so that one can write with them in the side by side.

A recipe is named by its text (``NAME_PREFIX`` + ``wlm.lowbit.Recipe.text``): the name says all
there is to build it, so the page and the API can pass it wherever a variant's name goes
(``wlm.shared.Shared.variant_arg``). Nothing a visitor builds can exhaust the server: one build
at a time (each takes a CPU turn of its own, never beside a measurement's timed block), at most
``MAX_BUILT`` built models kept (the least recently used one is dropped; it is built again if
asked for), and each quick measurement is a short slice (``QUICK_TOKENS``), kept for the
``MAX_QUICK`` most recent recipes.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from contextlib import nullcontext
from typing import Callable, ContextManager

from .lowbit import Recipe
from .variants import NO_SPEED, Variant, VariantSpec, build_lowbit

NAME_PREFIX = "recipe: "
MAX_BUILT = 4
MAX_QUICK = 32
QUICK_TOKENS = 2_000
PRESETS = {
    "all int8, per row (as qint8-per-channel's decoder)": "embedding=int8-row lstm=int8-row decoder=int8-row",
    "the hand-picked mix: embedding 4, LSTM 6, decoder 5 bits, groups of 32":
        "embedding=int4-g32 lstm=int6-g32 decoder=int5-g32",
    "everything at 4 bits, groups of 32": "embedding=int4-g32 lstm=int4-g32 decoder=int4-g32",
    "everything at 3 bits, groups of 32": "embedding=int3-g32 lstm=int3-g32 decoder=int3-g32",
    "everything at 2 bits, groups of 32 (falls apart)": "embedding=int2-g32 lstm=int2-g32 decoder=int2-g32",
    "only the decoder at 2 bits, per row": "decoder=int2-row",
}


def is_recipe_name(name) -> bool:
    return isinstance(name, str) and name.startswith(NAME_PREFIX)


class RecipeBook:
    """The recipes built for visitors of one checkpoint (thread-safe).

    Args:
        ckpt: the checkpoint (``wlm.checkpoint.Checkpoint``).
        guard: entered around every build (e.g. ``CpuTurns.build``: never inside a timed block).
        hessians: for ``rounding=gptq`` (None: the shipped calibration, loaded on first use).
    """

    def __init__(self, ckpt, guard: Callable[[], ContextManager] = nullcontext, hessians=None,
                 max_built: int = MAX_BUILT):
        self.ckpt, self.guard, self._hessians, self.max_built = ckpt, guard, hessians, max_built
        self._built: OrderedDict[str, Variant] = OrderedDict()
        self._quick: OrderedDict[str, dict] = OrderedDict()
        self._lock = threading.Lock()          # the dicts
        self._build_lock = threading.Lock()    # one build at a time
        self.builds = 0

    def recipe(self, name_or_text, field: str = "recipe") -> Recipe:
        """The recipe a name or a text says; ValueError naming the part and what is allowed."""
        if not isinstance(name_or_text, str):
            raise ValueError(f"{field} must be text such as 'embedding=int4-g32 lstm=int6-g32 decoder=int5-g32', "
                             f"got {type(name_or_text).__name__}")
        text = name_or_text[len(NAME_PREFIX):] if is_recipe_name(name_or_text) else name_or_text
        if len(text) > 400:
            raise ValueError(f"{field} is {len(text)} characters long; a recipe is at most 400")
        return Recipe.parse(text, self.ckpt.model.config.nlayers)

    def name(self, name_or_text, field: str = "recipe") -> str:
        """The canonical name of a recipe (``NAME_PREFIX`` + its canonical text)."""
        recipe = self.recipe(name_or_text, field)
        if not recipe.quantized:
            raise ValueError(f"{field} keeps every part in fp32: give at least one part 2 to 8 bits")
        return NAME_PREFIX + recipe.text

    def spec(self, name: str) -> VariantSpec:
        return VariantSpec(name, "torch", f"your recipe ({name[len(NAME_PREFIX):]}); {NO_SPEED}",
                           self.recipe(name), speed_claimed=False)

    def is_built(self, name: str) -> bool:
        return name in self._built

    def hessians(self):
        if self._hessians is None:
            from .gptq import Calibration
            self._hessians = Calibration.load(checkpoint_sha256=self.ckpt.sha256).hessians
        return self._hessians

    def get(self, name: str) -> Variant:
        """The built recipe ``name`` (canonical), built now if needed, one build at a time."""
        name = self.name(name)
        with self._lock:
            if name in self._built:
                self._built.move_to_end(name)
                return self._built[name]
        with self._build_lock:
            with self._lock:
                if name in self._built:
                    return self._built[name]
            recipe = self.recipe(name)
            hessians = self.hessians() if recipe.rounding == "gptq" else None
            with self.guard():
                variant = build_lowbit(self.spec(name), self.ckpt, recipe, hessians)
                _ = variant.size                       # its file's bytes, in the same turn
            self.builds += 1
            with self._lock:
                self._built[name] = variant
                while len(self._built) > self.max_built:
                    self._built.popitem(last=False)
            return variant

    def quick(self, name: str, measure: Callable[[Variant], dict]) -> dict:
        """The quick measurement of ``name`` (``measure(variant)`` makes it), made once and kept."""
        name = self.name(name)
        with self._lock:
            if name in self._quick:
                self._quick.move_to_end(name)
                return self._quick[name]
        record = measure(self.get(name))
        record["when_s"] = time.time()
        with self._lock:
            self._quick[name] = record
            while len(self._quick) > MAX_QUICK:
                self._quick.popitem(last=False)
        return record

    def quick_record(self, name: str) -> dict | None:
        """The kept quick measurement of ``name``, if there is one (nothing is computed)."""
        with self._lock:
            return self._quick.get(name)
