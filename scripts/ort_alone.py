"""An independent check of ``wlm bench``'s ONNX Runtime figures: the exported int8 model run by
plain ONNX Runtime, stock session options, over the same test tokens by the tutorial's protocol
(chunks of 25 tokens, batch 1, the hidden state carried), with none of wlm's loop.

    python scripts/ort_alone.py data/cache/onnx-<key>/wlm-int8.onnx --max-tokens 10000 --threads 1

It prints tokens/s of the session's runs alone and of runs plus the loss (log-softmax and the
true word's log-probability, in torch as the tutorial's evaluation does), the median of
``--repeats`` passes after a warm-up pass; compare with ``python -m wlm bench --variants ort-int8
--alone ort-int8 --max-tokens 10000 --threads 1``, whose tokens/s count each model's forward and
loss. The token ids come from ``wlm.data`` (the vocabulary is the checkpoint's); nothing timed
goes through wlm.
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("onnx", help="an exported model, e.g. data/cache/onnx-<key>/wlm-int8.onnx")
    p.add_argument("--checkpoint", default="data/wlm-lstm.safetensors")
    p.add_argument("--data", default=None, help="WikiText-2 folder (default: $WLM_DATA, else data/wikitext-2)")
    p.add_argument("--max-tokens", type=int, default=10_000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--reuse-buffer", action="store_true",
                   help="log-softmax into one buffer reused every chunk (as wlm's loop) instead of a fresh tensor")
    args = p.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))      # the checkout's wlm, for the ids
    from wlm.checkpoint import load_checkpoint
    from wlm.data import load_split, resolve_data_dir
    ckpt = load_checkpoint(args.checkpoint)
    ids = load_split(resolve_data_dir(args.data), "test", ckpt.dictionary)[:args.max_tokens].numpy()
    cfg = ckpt.model.config
    torch.set_num_threads(args.threads)

    so = ort.SessionOptions()                      # stock options but the thread count
    so.intra_op_num_threads = args.threads
    session = ort.InferenceSession(args.onnx, so, providers=["CPUExecutionProvider"])

    def one_pass(limit=None):
        h = np.zeros((cfg.nlayers, 1, cfg.nhid), np.float32)
        c = np.zeros_like(h)
        run_s = loss_s = nll = 0.0
        buf = torch.empty(25, len(ckpt.dictionary)) if args.reuse_buffer else None
        n = len(ids) - 1 if limit is None else min(limit, len(ids) - 1)
        for i in range(0, n, 25):
            seq = min(25, n - i)
            x = ids[i:i + seq].reshape(seq, 1)
            y = torch.from_numpy(ids[i + 1:i + 1 + seq].astype(np.int64))
            t0 = time.perf_counter()
            logits, h, c = session.run(None, {"ids": x, "h0": h, "c0": c})
            t1 = time.perf_counter()
            x_lp = torch.from_numpy(logits).view(seq, -1)
            lp = torch.log_softmax(x_lp, dim=-1, out=buf[:seq]) if buf is not None else torch.log_softmax(x_lp, dim=-1)
            nll -= lp.gather(1, y.view(-1, 1)).sum().item()
            t2 = time.perf_counter()
            run_s, loss_s = run_s + t1 - t0, loss_s + t2 - t1
        return n, run_s, loss_s, nll / n

    one_pass(101)                                  # warm-up: the first run makes the session's buffers
    runs = [one_pass() for _ in range(args.repeats)]
    n, loss = runs[0][0], runs[0][3]
    run_only = statistics.median(n / r[1] for r in runs)
    with_loss = statistics.median(n / (r[1] + r[2]) for r in runs)
    how = "a reused buffer" if args.reuse_buffer else "a fresh tensor per chunk"
    print(f"{args.onnx}: {n:,} tokens, {args.threads} thread(s), onnxruntime {ort.__version__}, loss {loss:.4f}, "
          f"log-softmax into {how}")
    print(f"tokens/s, median of {args.repeats} passes: session runs {run_only:,.0f}; runs + loss {with_loss:,.0f}")
    print("per pass (runs + loss): " + ", ".join(f"{n / (r[1] + r[2]):,.0f}" for r in runs))


if __name__ == "__main__":
    main()
