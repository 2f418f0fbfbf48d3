"""Training with the recipe of pytorch/examples word_language_model (plain SGD steps,
lr 20, clip 0.25, batch 20, bptt 35, lr / 4 when valid loss does not improve).

Resumable: a training state (weights, hidden state, RNG, position, lr, history) is saved
atomically every few minutes and at each epoch end beside the checkpoint.

The loop never waits for the device between batches: the epoch's loss is summed on the device
(in float64, as Python summed ``loss.item()``) and read once at the epoch's end, and the plain
SGD step is ``torch.optim.SGD(foreach=True)``, one multi-tensor update (on a GPU, a few kernels
instead of one per parameter). Both give bit-identical weights and losses to a per-parameter
``p.add_(p.grad, alpha=-lr)`` and a Python sum (tests/test_train.py checks it on the CPU).
"""
from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from .bench import cpu_model
from .checkpoint import CheckpointError, atomic_save, load_checkpoint, read_file, save_checkpoint
from .data import Corpus, batchify, get_batch
from .download import corpus_sha256
from .evaluate import evaluate
from .model import LSTMModel, ModelConfig, detach_hidden
from .progress import Progress

TRAIN_STATE = "wlm-train-state/1"
# Settings a resumed run must share with the saved one: they decide what the rest of the run
# computes (or, threads and device, the order of its floating-point sums).
RESUME_FIELDS = ("clip", "batch_size", "bptt", "seed", "ninp", "nhid", "nlayers", "dropout", "amp", "optimizer",
                 "lstm_init", "threads", "device", "eval_batch_size", "anneal_last")


@dataclass
class TrainConfig:
    data: str = "data/wikitext-2"
    out: str = "data/wlm-lstm.safetensors"
    epochs: int = 5
    lr: float = 20.0
    clip: float = 0.25
    batch_size: int = 20
    bptt: int = 35
    eval_batch_size: int = 10      # validation as in main.py (batch 10, bptt 35)
    seed: int = 1111
    ninp: int = 512
    nhid: int = 256
    nlayers: int = 5
    dropout: float = 0.5
    optimizer: str = "sgd"         # "sgd" (plain steps, the recipe) or "adam"
    lstm_init: str = "pytorch"     # "pytorch" (the tutorial's) or "preserve" (see init_lstm_preserving)
    init_gain: float = 4.0         # gain of the "preserve" input weights
    amp: str | None = None         # None or "bf16"
    device: str = "cpu"
    threads: int | None = None     # None: torch's default
    dry_run: bool = False          # one batch per epoch, for tests
    save_every_s: float = 300.0    # training-state save period
    anneal_last: bool = False      # divide lr by 4 for the last epoch

    def __post_init__(self):
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.amp not in (None, "bf16"):
            raise ValueError(f"amp must be None or 'bf16', got {self.amp!r}")
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.lstm_init not in ("pytorch", "preserve"):
            raise ValueError(f"lstm_init must be 'pytorch' or 'preserve', got {self.lstm_init!r}")
        if self.lr <= 0 or self.clip <= 0 or self.batch_size < 1 or self.bptt < 1:
            raise ValueError("lr, clip, batch_size and bptt must be positive")

    @property
    def state_path(self) -> Path:
        out = Path(self.out)
        return out.with_name(out.stem + ".train-state.safetensors")


@dataclass
class TrainState:
    epoch: int = 1                 # epoch in progress (1-based)
    batch: int = 0                 # next batch index within the epoch
    lr: float = 20.0
    best_val: float | None = None
    elapsed_s: float = 0.0
    history: list = field(default_factory=list)
    annealed: bool = False
    loss_sum: float = 0.0          # the epoch in progress: its training losses so far,
    loss_batches: int = 0          # how many batches they are,
    epoch_seconds: float = 0.0     # and its time, so that a resumed epoch reports all of it


def init_lstm_preserving(rnn: torch.nn.LSTM, gain: float) -> None:
    """Initialise a deep LSTM so that a signal keeps its scale from layer to layer.

    With PyTorch's default LSTM init, each layer passes on ~1/4 of the time-varying part
    of its input, so five layers leave the decoder a nearly constant input and the first
    epoch stays at the unigram level (measured here: valid loss 6.97 after one epoch,
    unigram 6.87; plain SGD at lr 20 leaves it from the second epoch on). Per gate: input weights Xavier-uniform with ``gain``, recurrent weights
    orthogonal, biases zero but the forget gate's (1).
    """
    H = rnn.hidden_size
    with torch.no_grad():
        for name, p in rnn.named_parameters():
            if name.startswith("weight_ih"):
                for k in range(4):
                    torch.nn.init.xavier_uniform_(p[k * H:(k + 1) * H], gain=gain)
            elif name.startswith("weight_hh"):
                for k in range(4):
                    torch.nn.init.orthogonal_(p[k * H:(k + 1) * H])
            else:
                p.zero_()
                if name.startswith("bias_ih"):
                    p[H:2 * H] = 1.0          # gate order i, f, g, o


def reseed_cudnn_dropout(device: torch.device) -> None:
    """Make cuDNN's LSTM draw its dropout state afresh from the CUDA generator.

    On a GPU the LSTM's dropout between layers comes from a state cuDNN keeps to itself, which
    no training state can hold. PyTorch draws that state from the CUDA generator again at the
    next LSTM call whenever the generator's state is set (``reset_rnn_state`` in
    ``ATen/cuda/CUDAGeneratorImpl.h``). Doing it at every epoch's start makes a run resumed at an
    epoch's end draw the same masks as one that never stopped. A no-op on the CPU.
    """
    if device.type == "cuda":
        torch.cuda.set_rng_state(torch.cuda.get_rng_state(device), device)


def _save_state(cfg: TrainConfig, model, hidden, st: TrainState, opt, data_sha256: dict | None = None) -> None:
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    for i, pstate in opt.state_dict()["state"].items():
        for k, v in pstate.items():
            tensors[f"optim.{i}.{k}"] = torch.as_tensor(v).detach().cpu().contiguous()
    tensors["hidden.h"] = hidden[0].detach().float().cpu().contiguous()
    tensors["hidden.c"] = hidden[1].detach().float().cpu().contiguous()
    tensors["rng.cpu"] = torch.get_rng_state()
    if hidden[0].is_cuda:
        tensors["rng.cuda"] = torch.cuda.get_rng_state(hidden[0].device)
    meta = {"format": TRAIN_STATE, "state": json.dumps(asdict(st)), "config": json.dumps(asdict(cfg)),
            "data_sha256": json.dumps(data_sha256 or {})}
    atomic_save(tensors, meta, cfg.state_path)


def resume_mismatches(saved: dict, cfg: TrainConfig, saved_data: dict | None = None,
                      data: dict | None = None) -> list[str]:
    """What differs between a saved run's settings (``saved``: its config as a dict) and ``cfg``,
    one phrase each ("threads was 1, now 2"); the data by the sha256 of its files when the saved
    run recorded them (``saved_data``, ``data``: name -> sha256), else by its folder."""
    out = [f"{k} was {saved.get(k, getattr(TrainConfig, k))!r}, now {getattr(cfg, k)!r}"
           for k in RESUME_FIELDS if saved.get(k, getattr(TrainConfig, k)) != getattr(cfg, k)]
    if saved_data and data is not None:
        changed = sorted(n for n in set(saved_data) | set(data) if saved_data.get(n) != data.get(n))
        if changed:
            def files(d):
                return ", ".join(f"{n} sha256 {(d.get(n) or 'missing')[:12]}" for n in changed)
            out.append(f"data was {saved.get('data')} ({files(saved_data)}), now {cfg.data} ({files(data)})")
    elif str(saved.get("data")) != str(cfg.data):
        out.append(f"data was {saved.get('data')!r}, now {cfg.data!r}")
    return out


def _load_state(cfg: TrainConfig, model, opt, device: torch.device, data_sha256: dict | None = None):
    tensors, meta = read_file(cfg.state_path)
    if meta.get("format") != TRAIN_STATE:
        raise CheckpointError(f"{cfg.state_path} is not a wlm training state")
    saved = json.loads(meta["config"])
    differ = resume_mismatches(saved, cfg, json.loads(meta.get("data_sha256") or "{}"), data_sha256)
    if differ:
        raise CheckpointError(f"cannot resume: {'; '.join(differ)} (start afresh without --resume, or resume "
                              f"with the saved run's settings)")
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True)
    torch.set_rng_state(tensors["rng.cpu"])
    if device.type == "cuda" and "rng.cuda" in tensors:
        torch.cuda.set_rng_state(tensors["rng.cuda"], device)
    sd = opt.state_dict()
    state: dict = {}
    for key, v in tensors.items():
        if key.startswith("optim."):
            _, i, k = key.split(".", 2)
            state.setdefault(int(i), {})[k] = v
    sd["state"] = state                 # Adam's moments; plain SGD has none
    opt.load_state_dict(sd)
    hidden = (tensors["hidden.h"], tensors["hidden.c"])
    return hidden, TrainState(**json.loads(meta["state"]))


def train(cfg: TrainConfig, *, resume: bool = False, log: Callable[[str], None] = print,
          progress_factory: Callable[[int], Progress] | None = None, corpus: Corpus | None = None) -> dict:
    """Train, writing the best checkpoint (by valid loss) to ``cfg.out``.

    Args:
        log: receives one human-readable line per epoch (and a few more).
        progress_factory: called with the epoch number, returns a ``progress(done, total)``.
    Returns the training record (per-epoch figures, final test loss).
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    device = torch.device(cfg.device)
    corpus = corpus or Corpus(cfg.data)
    ntoken = len(corpus.dictionary)
    model = LSTMModel(ModelConfig(ntoken, cfg.ninp, cfg.nhid, cfg.nlayers, cfg.dropout)).to(device)
    if cfg.lstm_init == "preserve":
        init_lstm_preserving(model.rnn, cfg.init_gain)
    opt = (torch.optim.Adam(model.parameters(), lr=cfg.lr, fused=True) if cfg.optimizer == "adam" else
           torch.optim.SGD(model.parameters(), lr=cfg.lr, foreach=True))      # plain steps: p -= lr * grad
    train_data = batchify(corpus.train, cfg.batch_size).to(device)   # (rows, 20)
    val_ids = corpus.valid
    data_sha256 = corpus_sha256(corpus.path)

    st = TrainState(lr=cfg.lr)
    hidden = None
    if resume:
        if not cfg.state_path.is_file():
            raise FileNotFoundError(f"--resume: no training state at {cfg.state_path}")
        hidden, st = _load_state(cfg, model, opt, device, data_sha256)
        hidden = tuple(h.to(device) for h in hidden)
        log(f"resuming at epoch {st.epoch}, batch {st.batch}, lr {st.lr:g}")
        if st.batch and device.type == "cuda" and cfg.dropout > 0:
            log("  (mid-epoch on a GPU: cuDNN's dropout state is drawn afresh here, so the rest of this epoch "
                "is not bit-identical to a run that did not stop; resuming at an epoch's end is)")
    amp = torch.bfloat16 if cfg.amp == "bf16" else None
    nbatches = math.ceil((train_data.size(0) - 1) / cfg.bptt)
    starts = list(range(0, train_data.size(0) - 1, cfg.bptt))
    if cfg.dry_run:
        starts = starts[:1]
    record = {"config": asdict(cfg), "torch": torch.__version__, "machine": f"{cpu_model()} ({platform.machine()})",
              "threads": torch.get_num_threads()}

    while st.epoch <= cfg.epochs:
        if cfg.anneal_last and st.epoch == cfg.epochs and not st.annealed:
            st.lr /= 4.0
            st.annealed = True
        model.train()
        if st.batch == 0 or hidden is None:
            hidden = model.init_hidden(cfg.batch_size)
            st.loss_sum, st.loss_batches, st.epoch_seconds = 0.0, 0, 0.0
            reseed_cudnn_dropout(device)
        progress = progress_factory(st.epoch) if progress_factory else None
        t0, last_save = time.perf_counter(), time.perf_counter()
        elapsed0, epoch0 = st.elapsed_s, st.epoch_seconds
        loss_sum = torch.tensor(st.loss_sum, dtype=torch.float64, device=device)
        n = st.loss_batches
        for group in opt.param_groups:
            group["lr"] = st.lr
        for b in range(st.batch, len(starts)):
            x, y = get_batch(train_data, starts[b], cfg.bptt)
            model.zero_grad(set_to_none=True)
            hidden = detach_hidden(hidden)
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                logits, hidden = model(x, hidden)
            loss = F.cross_entropy(logits.reshape(-1, ntoken).float(), y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            opt.step()
            hidden = tuple(h.float() for h in hidden)
            loss_sum += loss.detach()             # no .item(): the device is never waited for
            n += 1
            st.batch = b + 1
            if progress:
                progress(b + 1, len(starts))
            if time.perf_counter() - last_save > cfg.save_every_s and not cfg.dry_run:
                st.elapsed_s = elapsed0 + time.perf_counter() - t0
                st.epoch_seconds = epoch0 + time.perf_counter() - t0
                st.loss_sum, st.loss_batches = loss_sum.item(), n
                _save_state(cfg, model, hidden, st, opt, data_sha256)
                last_save = time.perf_counter()
        st.elapsed_s = elapsed0 + time.perf_counter() - t0
        train_s = epoch0 + time.perf_counter() - t0
        val = evaluate(model, val_ids[: 2 * cfg.eval_batch_size * cfg.bptt + 1] if cfg.dry_run else val_ids,
                       bptt=cfg.bptt, batch_size=cfg.eval_batch_size, threads=None, autocast_dtype=amp)
        improved = st.best_val is None or val.loss < st.best_val
        train_loss = loss_sum.item() / max(n, 1)
        entry = {"epoch": st.epoch, "lr": st.lr, "train_loss": train_loss, "valid_loss": val.loss,
                 "valid_ppl": val.ppl, "train_seconds": round(train_s, 1), "batches": n,
                 "tokens_per_s": round(n * cfg.batch_size * cfg.bptt / train_s, 1), "best": improved}
        st.history.append(entry)
        log(f"| epoch {st.epoch:3d} | lr {st.lr:6.3g} | train loss {train_loss:5.3f} | valid loss {val.loss:5.3f} "
            f"| valid ppl {val.ppl:8.2f} | {train_s:7.1f} s | {entry['tokens_per_s']:.0f} tok/s"
            + (" | saved" if improved else ""))
        if improved:
            st.best_val = val.loss
            save_checkpoint(cfg.out, model, corpus.dictionary, _provenance(cfg, st, corpus, nbatches))
        else:
            st.lr /= 4.0
        st.epoch += 1
        st.batch = 0
        if not cfg.dry_run:
            _save_state(cfg, model, hidden, st, opt, data_sha256)
    record["history"] = st.history
    record["best_valid_loss"] = st.best_val
    record["train_seconds"] = st.elapsed_s
    # Final figure, as the tutorial measures it: best weights, test split, bptt 25, batch 1.
    ckpt = load_checkpoint(cfg.out)
    test = evaluate(ckpt.model, corpus.test[:200] if cfg.dry_run else corpus.test, threads=None,
                    progress=progress_factory(0) if progress_factory else None)
    record["test_loss"], record["test_ppl"] = test.loss, test.ppl
    ckpt.provenance.update(test_loss=test.loss, test_ppl=test.ppl, train_seconds=round(st.elapsed_s, 1),
                           epochs=len(st.history))
    save_checkpoint(cfg.out, ckpt.model, ckpt.dictionary, ckpt.provenance)
    log(f"| end of training | test loss {test.loss:5.3f} | test ppl {test.ppl:8.2f} | best valid {st.best_val:5.3f}")
    return record


def _provenance(cfg: TrainConfig, st: TrainState, corpus: Corpus, nbatches: int) -> dict:
    return {
        "recipe": "pytorch/examples word_language_model main.py (lr/4 on plateau)"
                  + ("" if cfg.optimizer == "sgd" and cfg.lstm_init == "pytorch" else
                     f", with optimizer={cfg.optimizer}, lstm_init={cfg.lstm_init}"),
        "training": {k: v for k, v in asdict(cfg).items() if k not in ("data", "out", "save_every_s")},
        "epochs": st.epoch, "valid_loss": st.history[-1]["valid_loss"], "history": st.history,
        "batches_per_epoch": nbatches, "torch": torch.__version__, "data_sha256": corpus_sha256(corpus.path),
    }
