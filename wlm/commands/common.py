"""What the commands share: argument types, the options every model command has, and errors."""
from __future__ import annotations

import argparse
import sys

from ..checkpoint import DEFAULT_CHECKPOINT


class CLIError(Exception):
    """An error to print as one line, exit status 2."""


def positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}")
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def nonneg_float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {s!r}")
    if not v >= 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {s}")
    return v


def seed(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number from 0 to 2**63-1, got {s!r}")
    if not 0 <= v < 2**63:
        raise argparse.ArgumentTypeError(f"expected a whole number from 0 to 2**63-1, got {v}")
    return v


def command_line(args) -> str:
    """The command that was run, for the records it writes."""
    return "python -m wlm " + " ".join(args.argv)


def tqdm_factory(unit: str, quiet: bool):
    """name -> a tqdm progress callback (none drawn when ``quiet``)."""
    from ..progress import TqdmProgress
    return lambda name: TqdmProgress(str(name), unit=unit, disable=quiet)


def stderr_log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def add_model_options(c: argparse.ArgumentParser, *, model: str | None = None, split: bool = False,
                      cache: bool = False) -> argparse.ArgumentParser:
    """The options several commands share: --checkpoint [--quantize], [--data, --split,
    --max-tokens], [--cache], --threads, --json."""
    c.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT, help="the wlm checkpoint (.safetensors)")
    if model:
        c.add_argument("--quantize", action="store_true", help=f"{model} the qint8 dynamic quantized model")
    if split:
        add_data_option(c)
        c.add_argument("--split", choices=["train", "valid", "test"], default="test", help="the split to read")
        c.add_argument("--max-tokens", type=positive_int, default=None, help="use only the first N tokens")
    if cache:
        c.add_argument("--cache", help="folder for ONNX exports and stored results (default: $WLM_CACHE or "
                                       "data/cache)")
    c.add_argument("--threads", type=positive_int, default=1, help="torch threads (tutorial: 1)")
    c.add_argument("--json", action="store_true", help="print one JSON object")
    return c


def add_data_option(c: argparse.ArgumentParser) -> None:
    c.add_argument("--data", help="WikiText-2 folder (default: $WLM_DATA or data/wikitext-2)")


def load_model(args):
    """(checkpoint, model, name): the checkpoint of --checkpoint and the model to use: fp32, or
    --variant (--quantize: the tutorial's qint8), or --recipe (a low-bit recipe, ``wlm.lowbit``)."""
    from ..checkpoint import load_checkpoint
    ckpt = load_checkpoint(args.checkpoint)
    if getattr(args, "recipe", None):
        from ..recipes import NAME_PREFIX, RecipeBook
        book = RecipeBook(ckpt)
        name = book.name(args.recipe)
        return ckpt, book.get(name).model, name[len(NAME_PREFIX):]
    name = getattr(args, "variant", None) or ("qint8" if getattr(args, "quantize", False) else "fp32")
    if name == "fp32":
        return ckpt, ckpt.model, "fp32"
    from ..variants import build
    return ckpt, build(name, ckpt, getattr(args, "cache", None)).model, name


def corpus_of(args, ckpt):
    """The corpus of --data, refused unless it has the checkpoint's vocabulary."""
    from ..data import Corpus, resolve_data_dir
    corpus = Corpus(resolve_data_dir(args.data))
    if corpus.dictionary.idx2word != ckpt.dictionary.idx2word:
        raise CLIError(f"the corpus in {corpus.path} does not have the checkpoint's vocabulary")
    return corpus
