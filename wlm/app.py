"""The web demo without the web: the panels composed over what they share, and how a server
starts. ``demo.py`` lays the panels out and wires each event to one panel method; everything
here is testable without a server and usable from a notebook.

    >>> app = QuantDemo(AppConfig(checkpoint="data/wlm-lstm.safetensors"))
    >>> *_, last = app.side.generate("The game was released in", 40, 1.0, 0)

Floor plan: ``wlm.shared.Shared`` (models, turns, store, test split, argument checks) knows
nothing of the panels; each panel module knows ``Shared`` only; this module composes them.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable

from .checkpoint import CheckpointError
from .inspectview import InspectPanel
from .ladderview import LadderPanel
from .measureview import MeasurePanel
from .quantize import QuantizationError
from .recipeview import RecipePanel
from .shared import DEFAULT_VARIANT, AppConfig, Shared
from .sidebyside import SideBySide
from .storage import app_paths
from .yourtext import YourText

__all__ = ["AppConfig", "QuantDemo", "DEFAULT_VARIANT", "load_app", "serve"]
ROOT = Path(__file__).resolve().parent.parent
SPACES_LIVE_CAP = 40_000          # model-tokens (test tokens x models): ~20 s of a shared CPU per click at most


class QuantDemo(Shared):
    """The panels of the page over one ``Shared``: ``side``, ``your_text``, ``measure``, ``inspect``,
    ``ladder`` (how low can it go) and ``recipe`` (your recipe)."""

    def __init__(self, cfg: AppConfig):
        super().__init__(cfg)
        self.side = SideBySide(self)
        self.measure = MeasurePanel(self)
        self.inspect = InspectPanel(self)
        self.ladder = LadderPanel(self)
        self.recipe = RecipePanel(self)
        # the variant is checked as the model is asked for (fp32 is the reference, always there)
        self.your_text = YourText(lambda n: self.model(n).model, self.dictionary, self.turns, cfg.threads,
                                  variant_arg=self.variant_arg)


def default_live_cap() -> int:
    """On a Hugging Face Space (which sets SPACE_ID) a shared CPU: cap live measurements."""
    env = os.environ.get("WLM_MAX_MEASURE_MODEL_TOKENS")
    if env:
        return int(env)
    return SPACES_LIVE_CAP if os.environ.get("SPACE_ID") else 0


def prebuild_wanted() -> bool:
    return os.environ.get("WLM_PREBUILD", "1") != "0"      # 0: build each variant on first use


def load_app(checkpoint: str | None = None, threads: int = 1, live_cap: int | None = None,
             prebuild: bool | None = None, eager: bool = True) -> QuantDemo:
    """The app on the shipped checkpoint (or ``$WLM_CHECKPOINT``), its files where
    ``wlm.storage.app_paths`` puts them (persistent storage on a Space that has it).
    ``prebuild``: build the other variants in the background now (None: unless $WLM_PREBUILD=0);
    ``eager``: build the tutorial's qint8 before returning (a server builds it once it serves)."""
    ckpt = checkpoint or os.environ.get("WLM_CHECKPOINT") or str(ROOT / "data" / "wlm-lstm.safetensors")
    paths = app_paths(ROOT)
    cap = default_live_cap() if live_cap is None else live_cap
    prebuild = prebuild_wanted() if prebuild is None else prebuild
    return QuantDemo(AppConfig(checkpoint=ckpt, data=str(paths.data), threads=threads, cache=str(paths.cache),
                               shipped_results=str(paths.shipped), max_live_model_tokens=cap or None,
                               prebuild=prebuild, eager=eager))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python demo.py", description="fp32 vs int8 LSTM language model demo")
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    p.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    p.add_argument("--checkpoint", default=None, help="default: $WLM_CHECKPOINT or data/wlm-lstm.safetensors")
    p.add_argument("--threads", type=int, default=1, choices=[1, 2, 4],
                   help="torch threads of Generate and Measure's default (tutorial: 1; at most the CPUs here)")
    p.add_argument("--max-measure-model-tokens", type=int, default=default_live_cap(),
                   help="largest measurement run live, in test tokens x models (larger ones come from stored "
                        f"results); default: {SPACES_LIVE_CAP:,} on Hugging Face Spaces (SPACE_ID set), else no "
                        "limit (0); or $WLM_MAX_MEASURE_MODEL_TOKENS")
    return p.parse_args(argv)


def serve(build_demo: Callable[[QuantDemo], object], argv=None, **launch) -> int:
    """``python demo.py``: the app, its page (``build_demo(app)``, a gradio Blocks) served (``launch``:
    more of gradio's launch options, e.g. ``head``, ``theme``), then the work a visitor does not
    need for the first screen (the variants' builds)."""
    args = parse_args(argv)
    try:
        app = load_app(args.checkpoint, args.threads, args.max_measure_model_tokens, prebuild=False, eager=False)
    except ValueError as e:                      # e.g. more threads than this machine's CPUs
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (CheckpointError, QuantizationError) as e:
        print(f"error: {e}. Pass --checkpoint FILE (a wlm .safetensors checkpoint), or train one with "
              f"`python -m wlm train`.", file=sys.stderr)
        return 2
    print(f"models ready in {app.load_seconds:.1f} s", flush=True)
    demo = build_demo(app)
    try:
        demo.launch(server_name=args.host, server_port=args.port, share=args.share, ssr_mode=False,
                    enable_monitoring=False, max_file_size="1mb", footer_links=["api"], prevent_thread_lock=True,
                    **launch)
    except Exception as e:  # e.g. port already in use
        print(f"error: could not start the server: {e}", file=sys.stderr)
        return 1
    if prebuild_wanted():
        app.prebuild()          # once the page is served: the builds do not slow the start
    demo.block_thread()
    return 0
