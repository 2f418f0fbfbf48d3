import json
import subprocess
import sys

import pytest
import torch

from wlm.checkpoint import load_checkpoint
from wlm.download import corpus_sha256
from wlm.train import TrainConfig, train


def tiny_config(tiny_dir, out, **kw):
    base = dict(data=str(tiny_dir), out=str(out), epochs=2, bptt=5, batch_size=4, ninp=16, nhid=12,
                nlayers=2, dropout=0.3, save_every_s=0.0, eval_batch_size=2)
    return TrainConfig(**{**base, **kw})


def test_cli_dry_run_writes_a_checkpoint(tiny_dir, tmp_path):
    out = tmp_path / "m.safetensors"
    r = subprocess.run([sys.executable, "-m", "wlm", "train", "--data", str(tiny_dir), "--out", str(out),
                        "--dry-run", "--epochs", "1", "--ninp", "16", "--nhid", "12", "--nlayers", "2", "--json"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    record = json.loads(r.stdout)
    assert len(record["history"]) == 1 and record["history"][0]["batches"] == 1
    ck = load_checkpoint(out)
    saved = json.loads((tmp_path / "m.train.json").read_text())      # the record lands beside the checkpoint
    assert saved["history"] == record["history"] and saved["command"].startswith("python -m wlm train --data")
    assert ck.provenance["training"]["lr"] == 20.0 and ck.provenance["data_sha256"] == corpus_sha256(tiny_dir)
    assert ck.provenance["test_loss"] == pytest.approx(record["test_loss"])


def test_training_lowers_the_loss_and_anneals(tiny_dir, tmp_path):
    record = train(tiny_config(tiny_dir, tmp_path / "m.safetensors", epochs=3, lr=5.0), log=lambda s: None)
    h = record["history"]
    assert [e["epoch"] for e in h] == [1, 2, 3]
    assert h[-1]["train_loss"] < h[0]["train_loss"]
    for prev, cur in zip(h, h[1:]):   # lr divided by 4 after an epoch that did not improve
        assert cur["lr"] == (prev["lr"] if prev["best"] else prev["lr"] / 4)


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("recipe", [dict(), dict(optimizer="adam", lr=0.01, lstm_init="preserve")])
def test_resume_continues_where_it_stopped(tiny_dir, tmp_path, recipe):
    full = train(tiny_config(tiny_dir, tmp_path / "full.safetensors", **recipe), log=lambda s: None)

    cfg = tiny_config(tiny_dir, tmp_path / "cut.safetensors", **recipe)

    def stop_in_epoch_2(epoch):
        def progress(done, total):
            if epoch == 2 and done == 5:
                raise Interrupt
        return progress

    with pytest.raises(Interrupt):
        train(cfg, log=lambda s: None, progress_factory=stop_in_epoch_2)
    lines = []
    batches = []
    resumed = train(cfg, resume=True, log=lines.append,
                    progress_factory=lambda e: (lambda d, t: batches.append((e, d))))
    assert lines[0].startswith("resuming at epoch 2, batch 4")
    assert batches[0] == (2, 5)                     # not a restart: picks up at batch 5 of epoch 2
    for key in ("valid_loss", "train_loss", "batches"):   # the cut epoch reports all of its batches
        assert [e[key] for e in resumed["history"]] == [e[key] for e in full["history"]], key
    a, b = load_checkpoint(tmp_path / "full.safetensors"), load_checkpoint(tmp_path / "cut.safetensors")
    for k, v in a.model.state_dict().items():
        assert torch.equal(b.model.state_dict()[k], v), k          # exact on the CPU


def test_the_loop_is_plain_sgd_bit_for_bit(tiny_dir, tmp_path):
    """The loop without per-batch host syncs (loss summed on the device, foreach SGD) gives the
    same bits as the textbook loop: loss.item() summed in Python, p -= lr * grad per parameter,
    over two epochs (the lr only changes after the second's validation)."""
    from wlm.checkpoint import read_file
    from wlm.data import Corpus, batchify, get_batch
    from wlm.model import LSTMModel, ModelConfig, detach_hidden
    cfg = tiny_config(tiny_dir, tmp_path / "m.safetensors", epochs=2, lr=5.0)
    record = train(cfg, log=lambda s: None)

    corpus = Corpus(tiny_dir)
    torch.manual_seed(cfg.seed)
    ntoken = len(corpus.dictionary)
    model = LSTMModel(ModelConfig(ntoken, cfg.ninp, cfg.nhid, cfg.nlayers, cfg.dropout)).train()
    data = batchify(corpus.train, cfg.batch_size)
    for epoch in record["history"]:
        hidden, total, n = model.init_hidden(cfg.batch_size), 0.0, 0
        for i in range(0, data.size(0) - 1, cfg.bptt):
            x, y = get_batch(data, i, cfg.bptt)
            model.zero_grad(set_to_none=True)
            logits, hidden = model(x, detach_hidden(hidden))
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, ntoken), y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(p.grad, alpha=-cfg.lr)
            total, n = total + loss.item(), n + 1
        assert epoch["lr"] == cfg.lr and epoch["batches"] == n and epoch["train_loss"] == total / n

    trained, _ = read_file(cfg.state_path)             # the weights at the end of the last epoch
    for k, v in model.state_dict().items():
        assert torch.equal(trained[f"model.{k}"], v), k


def test_resume_without_state_is_an_error(tiny_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="no training state"):
        train(tiny_config(tiny_dir, tmp_path / "none.safetensors"), resume=True)


def test_resume_with_other_settings_is_refused(tiny_dir, tmp_path):
    cfg = tiny_config(tiny_dir, tmp_path / "m.safetensors", epochs=1)
    train(cfg, log=lambda s: None)
    from wlm.checkpoint import CheckpointError
    with pytest.raises(CheckpointError, match="bptt"):
        train(tiny_config(tiny_dir, tmp_path / "m.safetensors", epochs=2, bptt=7), resume=True)


def test_preserving_init_keeps_the_signal_through_five_layers():
    from wlm.model import LSTMModel, ModelConfig
    from wlm.train import init_lstm_preserving
    torch.manual_seed(0)
    x = torch.randn(50, 1, 64) * 0.06

    def top_signal(model):          # time-varying part of the top layer's output
        with torch.no_grad():
            out, _ = model.rnn(x)
        return float(out.std(0).mean())

    a = LSTMModel(ModelConfig(10, ninp=64, nhid=64, nlayers=5)).eval()
    b = LSTMModel(ModelConfig(10, ninp=64, nhid=64, nlayers=5)).eval()
    init_lstm_preserving(b.rnn, gain=4.0)
    assert b.rnn.bias_ih_l0[64:128].eq(1).all() and b.rnn.bias_hh_l3.eq(0).all()
    assert top_signal(b) > 10 * top_signal(a)


def test_anneal_last_divides_the_final_epochs_lr(tiny_dir, tmp_path):
    record = train(tiny_config(tiny_dir, tmp_path / "m.safetensors", epochs=2, lr=1.0, anneal_last=True),
                   log=lambda s: None)
    first, last = record["history"]
    assert last["lr"] == (first["lr"] if first["best"] else first["lr"] / 4) / 4


def test_resume_names_every_setting_that_differs(tiny_dir, tmp_path):
    from wlm.checkpoint import CheckpointError
    from wlm.train import RESUME_FIELDS
    assert {"threads", "device", "eval_batch_size", "anneal_last"} <= set(RESUME_FIELDS)
    out = tmp_path / "m.safetensors"
    train(tiny_config(tiny_dir, out, epochs=1, threads=1), log=lambda s: None)
    changed = dict(threads=2, eval_batch_size=3, anneal_last=True, device="meta")
    with pytest.raises(CheckpointError) as e:
        train(tiny_config(tiny_dir, out, epochs=2, **changed), resume=True)
    msg = str(e.value)
    assert msg.startswith("cannot resume: ")
    for phrase in ("threads was 1, now 2", "eval_batch_size was 2, now 3", "anneal_last was False, now True",
                   "device was 'cpu', now 'meta'"):
        assert phrase in msg, msg


def test_resume_on_other_data_is_refused_the_same_data_elsewhere_is_not(tiny_dir, tmp_path):
    import shutil
    from wlm.checkpoint import CheckpointError
    out = tmp_path / "m.safetensors"
    train(tiny_config(tiny_dir, out, epochs=1), log=lambda s: None)
    moved = shutil.copytree(tiny_dir, tmp_path / "moved")
    other = shutil.copytree(tiny_dir, tmp_path / "other")
    with open(other / "train.txt", "a") as f:
        f.write(" w1 w2 w3 \n")
    with pytest.raises(CheckpointError, match=r"cannot resume: data was .* \(train\.txt sha256 [0-9a-f]{12}\), now"):
        train(tiny_config(other, out, epochs=2), resume=True)
    record = train(tiny_config(moved, out, epochs=2), resume=True, log=lambda s: None)    # same bytes: fine
    assert len(record["history"]) == 2
