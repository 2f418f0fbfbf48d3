"""python -m wlm train: train the model with the tutorial's recipe and write the checkpoint."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ..checkpoint import DEFAULT_CHECKPOINT
from .common import CLIError, add_data_option, command_line, positive_int, tqdm_factory

HELP = "train the model with the tutorial's recipe"


def add_arguments(t) -> None:
    add_data_option(t)
    t.add_argument("--out", default=DEFAULT_CHECKPOINT, help="checkpoint to write (best by valid loss)")
    t.add_argument("--epochs", type=positive_int, default=5)
    t.add_argument("--lr", type=float, default=None, help="learning rate (default: 20 for sgd, 0.002 for adam)")
    t.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd", help="sgd: plain steps, as the recipe")
    t.add_argument("--lstm-init", choices=["pytorch", "preserve"], default="pytorch",
                   help="preserve: scale-preserving LSTM init for deep stacks (see wlm.train.init_lstm_preserving)")
    t.add_argument("--init-gain", type=float, default=4.0, help="gain of the preserve init's input weights")
    t.add_argument("--clip", type=float, default=0.25)
    t.add_argument("--batch-size", type=positive_int, default=20)
    t.add_argument("--bptt", type=positive_int, default=35)
    t.add_argument("--seed", type=int, default=1111)
    t.add_argument("--ninp", type=positive_int, default=512)
    t.add_argument("--nhid", type=positive_int, default=256)
    t.add_argument("--nlayers", type=positive_int, default=5)
    t.add_argument("--dropout", type=float, default=0.5)
    t.add_argument("--amp", choices=["none", "bf16"], default="none", help="autocast dtype")
    t.add_argument("--device", default="cpu", help="cpu, or cuda where present")
    t.add_argument("--threads", type=positive_int, default=None, help="torch threads (default: torch's)")
    t.add_argument("--anneal-last", action="store_true", help="divide the lr by 4 for the last epoch")
    t.add_argument("--resume", action="store_true", help="continue from the saved training state")
    t.add_argument("--dry-run", action="store_true", help="one batch per epoch (for tests)")
    t.add_argument("--save-every", type=float, default=300.0, help="seconds between training-state saves")
    t.add_argument("--record", help="training record (JSON) file (default: beside --out, .train.json)")
    t.add_argument("--json", action="store_true", help="print the training record as JSON")


def run(args) -> int:
    from ..data import resolve_data_dir
    from ..train import TrainConfig, train
    lr = args.lr if args.lr is not None else (0.002 if args.optimizer == "adam" else 20.0)
    cfg = TrainConfig(data=str(resolve_data_dir(args.data)), out=args.out, epochs=args.epochs, lr=lr,
                      clip=args.clip, batch_size=args.batch_size, bptt=args.bptt, seed=args.seed,
                      ninp=args.ninp, nhid=args.nhid, nlayers=args.nlayers, dropout=args.dropout,
                      amp=None if args.amp == "none" else args.amp, device=args.device,
                      anneal_last=args.anneal_last, optimizer=args.optimizer, lstm_init=args.lstm_init,
                      init_gain=args.init_gain, threads=args.threads, dry_run=args.dry_run,
                      save_every_s=args.save_every)
    if cfg.device.startswith("cuda"):
        import torch
        if not torch.cuda.is_available():
            raise CLIError("--device cuda: no CUDA device is available to this torch build")
    log = (lambda line: print(line, file=sys.stderr, flush=True)) if args.json else (lambda line: print(line, flush=True))
    factory = tqdm_factory("batch", args.json)
    record = train(cfg, resume=args.resume, log=log,
                   progress_factory=lambda epoch: factory(f"epoch {epoch}" if epoch else "test"))
    record["command"] = command_line(args)
    record_path = args.record or str(Path(cfg.out).with_suffix(".train.json"))
    with open(record_path, "w") as f:
        json.dump(record, f, indent=1)
    log(f"training record: {record_path}")
    if args.json:
        print(json.dumps(record))
    return 0
