"""python -m wlm calibrate: the input statistics GPTQ rounds with, from the training split."""
from __future__ import annotations

from .common import CLIError, add_data_option, command_line, corpus_of, positive_int

HELP = "collect the inputs' second moments of every LSTM and decoder matrix (for rounding=gptq)"


def add_arguments(c) -> None:
    from ..checkpoint import DEFAULT_CHECKPOINT
    from ..gptq import CALIBRATION_FILE
    c.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT, help="the wlm checkpoint (.safetensors)")
    add_data_option(c)
    c.add_argument("--split", choices=["train", "valid"], default="train",
                   help="the text read (never test: the results are judged on it)")
    c.add_argument("--max-tokens", type=positive_int, default=100_000, help="tokens read")
    c.add_argument("--out", default=str(CALIBRATION_FILE), help="the calibration file written")
    c.add_argument("--threads", type=positive_int, default=1, help="torch threads")


def run(args) -> int:
    from ..checkpoint import load_checkpoint
    from ..download import sha256_file
    from ..gptq import Calibration
    from ..progress import TqdmProgress
    from ..threads import num_threads
    if args.split == "test":
        raise CLIError("--split test: calibrating on the text the results are judged on would tune them to it")
    ckpt = load_checkpoint(args.checkpoint)
    corpus = corpus_of(args, ckpt)
    with num_threads(args.threads):
        cal = Calibration.collect(ckpt.model, corpus.split(args.split), max_tokens=args.max_tokens,
                                  progress=TqdmProgress("calibrate", unit="tok"))
    cal.provenance = {"checkpoint_sha256": ckpt.sha256, "split": args.split, "tokens": cal.tokens,
                      "data_sha256": sha256_file(corpus.path / f"{args.split}.txt"), "command": command_line(args)}
    path = cal.save(args.out)
    print(f"calibration of {len(cal.hessians)} matrices on {cal.tokens:,} {args.split} tokens written to {path}")
    return 0
