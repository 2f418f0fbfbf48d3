"""The demo's event handlers (wlm.app), called directly: no server."""
import html
import json
import logging
import re
import shutil
import threading
from dataclasses import replace

import pytest

from wlm.app import AppConfig, QuantDemo
from wlm.data import FULL_SLICE
from wlm.inspectview import OUTPUTS as INSPECT_OUTPUTS
from wlm.measureview import DEFAULT_SLICE, OUTPUTS, SLICES, TABLE_COLUMNS
from wlm.download import SHA256
from tests.conftest import sharpen, signed

JOIN_S = 120          # no test thread may outlive this


def sharp_checkpoint(folder, corpus, gain=60):
    """The tiny model made confident (a fresh one is nearly uniform, and then int8 never changes
    a word): with gain 60, 5 of seeds 0-7 make fp32 and qint8 part within 60 words at T = 1."""
    import torch
    from wlm.checkpoint import save_checkpoint
    from wlm.model import LSTMModel, ModelConfig
    torch.manual_seed(0)
    model = LSTMModel(ModelConfig(len(corpus.dictionary), ninp=16, nhid=12, nlayers=2))
    sharpen(model, gain)
    return save_checkpoint(folder / "m.safetensors", model, corpus.dictionary)


@pytest.fixture(scope="module")
def app(tmp_path_factory, tiny_dir, tiny_corpus):
    ck = sharp_checkpoint(tmp_path_factory.mktemp("ck"), tiny_corpus)
    return QuantDemo(AppConfig(checkpoint=str(ck), data=str(tiny_dir), cache=str(tmp_path_factory.mktemp("cache")),
                               thread_choices=(1, 2)))


def pane_words(pane_html: str) -> list[str]:
    """The generated words of a pane (raw mode: one token per word span)."""
    return [html.unescape(w) for w in re.findall(r'<span class="wlm-word[^"]*"[^>]*>([^<]*)</span>', pane_html)]


def test_generate_streams_both_panes_and_finishes_with_stats(app, monkeypatch):
    monkeypatch.setattr("wlm.sidebyside.STREAM_INTERVAL_S", 0.0)        # every word an update
    updates = list(app.side.generate("w1 w2 zebra", 20, 1.0, 4, False))
    assert len(updates) == 20
    left, right, ls, rs, notes, parting = updates[-1]
    assert left.count("wlm-prompt") == 3 and "zebra" in left
    assert left.count('class="wlm-word') == 20 and left.count("data-p-ref=") == 20 and "title=" in left
    assert "Step by step" in notes and "agreement of" in notes
    assert "**fp32**" in ls and "words/s" in ls and "ms per word" in ls and "**qint8**" in rs
    assert "(20 words, 1 thread)" in ls and "(20 words, 1 thread)" in rs
    assert "python -m wlm generate --prompt 'w1 w2 zebra' --words 20 --temperature 1.0 --seed 4 --threads 1" in notes
    assert "`--variant qint8`" in notes
    assert "`zebra`" in notes
    assert len(updates[5][0]) < len(left)                          # panes grow word by word
    again = list(app.side.generate("w1 w2 zebra", 20, 1.0, 4, False))[-1]
    assert again[:2] == (left, right)                              # same seed, same text


def test_parting_is_marked_with_both_top_words(app):
    """Seeds 0-7, 60 words at T = 1: at least 4 runs part (seen: 5); every one that does has the
    boxed word in both panes and a table with each model's top 5 and both drawn words."""
    parted = 0
    for seed in range(8):
        *_, last = app.side.generate("", 60, 1.0, seed, True)
        left, right, _, _, notes, parting = last
        if "Identical for the first" not in notes:
            assert "same 60 words" in notes and parting == "" and "wlm-diverge" not in left
            continue
        parted += 1
        k = int(re.search(r"Identical for the first (\d+) of 60", notes).group(1))
        words = pane_words(left), pane_words(right)
        assert words[0][:k] == words[1][:k] and words[0][k] != words[1][k]     # they part at word k + 1
        boxed = [re.search(r'wlm-diverge[^>]*>([^<]*)<', pane).group(1) for pane in (left, right)]
        assert [html.unescape(b) for b in boxed] == [words[0][k], words[1][k]]
        table = [html.unescape(w) for w in re.findall(r"<tr><td>(?:<b>)?([^<]*)", parting)]
        drawn = [html.unescape(w) for w in re.findall(r"<b>([^<]*)</b> ◂", parting)]
        assert sorted(drawn) == sorted(words[i][k] for i in (0, 1))
        assert 5 <= len(table) <= 12 and set(drawn) <= set(table)
        from wlm.text import md_escape                                            # <unk> as a word, not a tag
        assert f"At word {k + 1} (boxed) fp32 wrote “{md_escape(words[0][k])}”, qint8 “{md_escape(words[1][k])}”" in notes
    assert parted >= 4


def test_raw_toggle_shows_tokens(app):
    *_, last = app.side.generate("w1 @-@ w2", 3, 0, 0, True)
    assert "@-@" in last[0]
    *_, last = app.side.generate("w1 @-@ w2", 3, 0, 0, False)
    assert "@-@" not in last[0]


@pytest.mark.parametrize("args,field", [
    (("x", 0, 1.0, 0), "words"), (("x", 1001, 1.0, 0), "words"), (("x", 2.5, 1.0, 0), "words"),
    (("x", 10, -1, 0), "temperature"), (("x", 10, float("nan"), 0), "temperature"), (("x", 10, 1.0, -3), "seed"),
    (("x", 10, 1.0, 2**63), "seed"), (("x", 10, 1.0, "9223372036854775808"), "seed"), (("x", 10, 1.0, 2.0**60), "seed"),
    (("x", 10, 1.0, "12abc"), "seed"), (("x", 10, 1.0, 1.5), "seed"), (("x", 10, 1.0, True), "seed"),
    (("x", "many", 1.0, 0), "words"), ((123, 10, 1.0, 0), "prompt"), (("x" * 2001, 10, 1.0, 0), "prompt"),
])
def test_bad_generation_input_is_a_clear_error(app, args, field):
    with pytest.raises(ValueError, match=field):
        list(app.side.generate(*args))


def test_seeds_are_exact_up_to_2_63_and_match_the_command_line(app):
    """The pane writes what `python -m wlm generate --seed S` writes, with S taken exactly: 2**60+1
    is not 2**60 (a float would make them one), and 2**63-1 is allowed, as a number or as text."""
    from tests.test_cli import run
    texts = {}
    for seed in (2**63 - 1, 2**60 + 1, 2**60, str(2**63 - 1)):
        *_, last = app.side.generate("w3", 30, 1.0, seed, True)
        texts[seed] = pane_words(last[0]), pane_words(last[1])
    assert texts[2**63 - 1] == texts[str(2**63 - 1)]
    assert texts[2**60 + 1] != texts[2**60]
    for seed in (2**63 - 1, 2**60 + 1):
        for k, extra in enumerate(([], ["--variant", "qint8"])):
            r = run("generate", "--checkpoint", app.cfg.checkpoint, "--prompt", "w3", "--words", "30", "--seed",
                    str(seed), "--json", *extra)
            assert r.returncode == 0, r.stderr
            assert json.loads(r.stdout)["words"] == texts[seed][k], (seed, extra)


def test_each_step_of_a_generate_runs_at_the_apps_thread_count_on_any_os_thread(app, monkeypatch):
    """A web server resumes a generator on whichever of its worker threads is free, and each
    keeps the torch thread count it last had. Here four long-lived workers start at 2 (a server
    on 2 CPUs) and take the generator's next() in turn; the app runs at 1: every model call of
    the Generate must see 1 thread."""
    from concurrent.futures import ThreadPoolExecutor

    import torch
    monkeypatch.setattr("wlm.sidebyside.STREAM_INTERVAL_S", 0.0)        # every word an update, every one a next()
    seen = []
    models = [app.variants.get(n).model for n in ("fp32", "qint8")]
    for m in models:
        m.forward = lambda *a, f=m.forward, **kw: (seen.append(torch.get_num_threads()), f(*a, **kw))[1]
    torch.set_num_threads(2)
    workers = [ThreadPoolExecutor(max_workers=1) for _ in range(4)]
    try:
        assert [w.submit(torch.get_num_threads).result(JOIN_S) for w in workers] == [2] * 4    # started at 2
        gen = app.side.generate("w1", 40, 1.0, 0, False)
        updates = []
        while (out := workers[len(updates) % 4].submit(next, gen, None).result(JOIN_S)) is not None:
            updates.append(out)
    finally:
        torch.set_num_threads(1)
        for w in workers:
            w.shutdown()
        for m in models:
            del m.forward
    assert len(updates) == 40 and "(40 words, 1 thread)" in updates[-1][2]
    assert len(seen) >= 40 and set(seen) == {1}


@pytest.mark.parametrize("bad", [0, 3, 4, 64, "64", 1.5, True, "two"])
def test_threads_outside_the_allowed_counts_are_refused_naming_them(app, bad):
    with pytest.raises(ValueError, match=r"threads must be one of 1, 2 \(the page's choices 1, 2, 4 that fit"):
        app.measure.measure("2,000 tokens", bad)


def lead(cell: str) -> float:
    """The figure of a table cell such as "0.9812 ± 0.0010"."""
    return float(cell.split()[0])


def M(out: tuple) -> dict:
    """A Measure panel's outputs by name."""
    assert len(out) == len(OUTPUTS)
    return dict(zip(OUTPUTS, out))


def test_measure_fills_table_plots_and_status(app):
    calls = []
    out = M(app.measure.measure("2,000 tokens", 1, fresh=True, progress=lambda d, t: calls.append((d, t))))
    table, trade, status = out["table"], out["size_trade"], out["status"]
    assert list(table.columns) == TABLE_COLUMNS and list(table["model"]) == ["fp32", "qint8"]
    assert list(table["engine"]) == ["torch", "torch"] and trade.count('class="point"') == 2
    assert "<title>qint8: size (MB)" in trade and ">fp32</text>" in trade
    n = min(2000, len(app.test_split())) - 1
    assert f"2 models on {n:,} test tokens" in status and "Measured live" in status
    assert table["size MB"][1] < table["size MB"][0]
    assert out["size"].count('class="bar"') == 6 and ">embedding</text>" in out["size"]    # 2 models x 3 parts
    assert out["speed"].count('class="bar"') == 2 and calls[-1][0] == calls[-1][1]
    assert 0 < lead(table["top-1 agree"][1]) <= 1 and 0 < lead(table["overlap (1-TV)"][1]) <= 1
    record = out["shown"]["rows"][1]                                         # each figure with its error
    assert table["loss change (nats)"][1].startswith(f'{signed(record["loss_change"])} ± {record["loss_change_se"]:.4f}')
    assert table["top-1 agree"][1] == f'{record["agreement"]["top1"]:.4f} ± {record["agreement"]["top1_se"]:.4f}'
    lo, hi = record["speedup_ci"]
    assert table["speed-up x [95%]"][1] == f'{record["speedup"]:.2f} [{lo:.2f}-{hi:.2f}]'
    assert out["kl"].count('class="line"') == 1 and "<title>qint8</title>" in out["kl"] and ">qint8</text>" in out["kl"]
    assert "quantized engine" in out["details"] and "This server" in out["details"]
    assert "not the published WikiText-2" in status            # the tiny corpus is not WikiText-2
    assert 'data-field="speedup"' in out["scorecard"] and out["shown"]["variants"] == ["fp32", "qint8"]
    assert (out["slice"], out["threads"], out["variants"]) == ("2,000 tokens", 1, ["qint8"])   # the controls follow
    cost = re.search(r"Cost of measuring: ([\d.e-]+) s of computing for ([\d.e-]+) s of the models' own calls "
                     r"\(([\d.]+)x", out["details"])
    assert cost and float(cost.group(1)) >= float(cost.group(2)) > 0 and float(cost.group(3)) >= 1


def test_measure_rejects_unknown_slice(app):
    with pytest.raises(ValueError, match="slice must be one of"):
        app.measure.measure("all of it")
    assert FULL_SLICE in SLICES


def test_offline_a_failed_measure_keeps_what_is_shown_and_says_so_in_one_sentence(app, tmp_path, monkeypatch):
    monkeypatch.setenv("WLM_DATA_MIRROR", "http://127.0.0.1:9")        # nothing listens: offline
    empty = QuantDemo(AppConfig(checkpoint=str(app.cfg.checkpoint), data=str(tmp_path / "none"), cache=app.cfg.cache))
    assert "Measure** fetches test.txt" in empty.data_status()
    shown = M(app.measure.measure("2,000 tokens", 1, ["qint8-lstm-only"]))      # on screen before the failure
    out = M(empty.measure.measure("5,000 tokens", 1, ["qint8"], shown["shown"], "qint8-lstm-only"))
    assert out["table"].equals(shown["table"]) and out["size"] == shown["size"] and out["kl"] == shown["kl"]
    assert out["shown"] is shown["shown"] and out["scorecard"].startswith(shown["scorecard"][:200])
    assert (out["slice"], out["variants"]) == ("2,000 tokens", ["qint8-lstm-only"])   # controls: what is shown
    status = out["status"]
    assert "could not be fetched" in status and "unchanged" in status
    assert status.count(". ") <= 2 and "\n" not in status and "WLM_DATA" not in status and "/" not in status
    assert not list((tmp_path / "none").glob("*"))                       # nothing left behind
    nothing = M(empty.measure.measure("5,000 tokens", 1, ["qint8"]))       # nothing shown yet: an empty panel
    assert nothing["table"].empty and "no measurement yet" in nothing["kl"] and "could not be fetched" in nothing["status"]


@pytest.mark.wikitext
def test_measure_fetches_the_test_split_on_demand(tmp_path, server, monkeypatch):
    from tests.conftest import SHIPPED_CHECKPOINT
    target = QuantDemo(AppConfig(checkpoint=str(SHIPPED_CHECKPOINT), data=str(tmp_path / "wt2"),
                                 cache=str(tmp_path / "cache")))
    monkeypatch.setenv("WLM_DATA_MIRROR", f"{server}/corrupt")
    with_log = []
    handler = logging.Handler()
    handler.emit = lambda r: with_log.append(r.getMessage())
    logging.getLogger("wlm").addHandler(handler)
    try:
        status = M(target.measure.measure("2,000 tokens", 1))["status"]
    finally:
        logging.getLogger("wlm").removeHandler(handler)
    assert "could not be fetched" in status and not (tmp_path / "wt2" / "test.txt").exists()
    assert any("sha256 mismatch" in m for m in with_log)                # the details go to the server log
    monkeypatch.setenv("WLM_DATA_MIRROR", f"{server}/good")
    seen = []
    out = M(target.measure.measure("2,000 tokens", 1, download_progress=lambda name: lambda d, t: seen.append(name)))
    assert seen and set(seen) == {"test.txt"} and sorted(p.name for p in (tmp_path / "wt2").iterdir()) == ["test.txt"]
    assert list(out["table"]["model"]) == ["fp32", "qint8"] and "not the published" not in out["status"]


def test_measurements_are_stored_and_shown_to_later_visitors(app):
    live = M(app.measure.measure("2,000 tokens", 1, ["qint8-lstm-only"], fresh=True))
    assert "Stored result" not in live["status"]
    assert app.store.folder.is_dir() and not list(app.store.folder.glob("*.part"))
    later = QuantDemo(app.cfg)                                   # a new process, same cache folder
    shown = M(later.measure.measure("2,000 tokens", 1, ["qint8-lstm-only"]))
    assert "Stored result" in shown["status"] and shown["table"].equals(live["table"])
    again = M(later.measure.measure("2,000 tokens", 1, ["qint8-lstm-only"], fresh=True))
    assert "Stored result" not in again["status"]
    app.measure.measure(DEFAULT_SLICE, 1, ["qint8"], fresh=True)
    assert "Stored result" in M(QuantDemo(app.cfg).measure.initial())["status"]


def test_variants_in_any_order_are_one_measurement_and_one_file(app):
    before = set(app.store.folder.glob("measure-*.json"))
    ab = M(app.measure.measure("2,000 tokens", 1, ["qint8-linear-only", "qint8-per-channel"], fresh=True))
    new = set(app.store.folder.glob("measure-*.json")) - before
    ba = M(app.measure.measure("2,000 tokens", 1, ["qint8-per-channel", "qint8-linear-only", "qint8-per-channel"]))
    assert len(new) == 1 and set(app.store.folder.glob("measure-*.json")) - before == new
    assert "Stored result" in ba["status"] and ba["table"].equals(ab["table"])
    assert list(ab["table"]["model"]) == ["fp32", "qint8-per-channel", "qint8-linear-only"]       # canonical order
    part = M(app.measure.measure("2,000 tokens", 1, ["qint8-linear-only"]))                     # a subset of it
    assert "Stored result" in part["status"] and list(part["table"]["model"]) == ["fp32", "qint8-linear-only"]
    assert part["table"].iloc[1].equals(ab["table"].iloc[2])


def test_a_stored_result_is_not_served_for_other_test_data(app, tmp_path):
    """Same checkpoint, slice, threads, variants and machine, but another test.txt (same words,
    another order): measured anew, not served from the store."""
    app.measure.measure("2,000 tokens", 1, ["fp16"], fresh=True)
    other = tmp_path / "other"
    other.mkdir()
    lines = (app.data_dir / "test.txt").read_text().splitlines(keepends=True)
    (other / "test.txt").write_text("".join(reversed(lines)))
    there = QuantDemo(replace(app.cfg, data=str(other)))
    status = M(there.measure.measure("2,000 tokens", 1, ["fp16"]))["status"]
    assert "Stored result" not in status and "test tokens" in status
    assert "Stored result" in M(there.measure.measure("2,000 tokens", 1, ["fp16"]))["status"]   # now stored for its data


def test_the_live_cap_counts_model_tokens_and_larger_ones_come_only_from_the_store(app):
    n = len(app.test_split()) - 1
    capped = QuantDemo(replace(app.cfg, max_live_model_tokens=2 * n))
    ok = M(capped.measure.measure(FULL_SLICE, 1, ["qint8-per-channel"], fresh=True))       # 2 models x n tokens: fits
    assert "live limit" not in ok["status"] and f"{n:,}" in ok["status"]
    over = M(capped.measure.measure(FULL_SLICE, 1, ["qint8-per-channel", "fp16"], fresh=True, shown=ok["shown"]))
    assert f"{FULL_SLICE} with 3 models is over this shared server's live limit of {2 * n:,} model-tokens" \
        in over["status"]
    assert over["table"].equals(ok["table"]) and over["variants"] == ["qint8-per-channel"]    # what was shown stays
    app.measure.measure(FULL_SLICE, 1, ["qint8-per-channel", "fp16"])         # measured where there is no cap...
    assert "Stored result" in M(capped.measure.measure(FULL_SLICE, 1, ["qint8-per-channel", "fp16"]))["status"]


def test_unchanged_controls_reshow_a_result_measured_elsewhere_instead_of_recomputing(app, tmp_path):
    """No live cap here, yet a stored result of the same settings from another machine (say the
    shipped one) is shown as it is; only Measure again recomputes."""
    out = M(app.measure.measure("2,000 tokens", 1, ["qint8-per-channel"], fresh=True))
    record = dict(out["shown"], cpu="another machine", when="2020-01-01T00:00:00+00:00")
    elsewhere = QuantDemo(replace(app.cfg, cache=str(tmp_path / "c")))
    elsewhere.store.save(record)
    again = M(elsewhere.measure.measure("2,000 tokens", 1, ["qint8-per-channel"]))
    assert "Stored result" in again["status"] and "2020-01-01" in again["status"]
    live = M(elsewhere.measure.measure("2,000 tokens", 1, ["qint8-per-channel"], fresh=True))
    assert "Measured live" in live["status"]


def test_a_fresh_server_shows_every_shipped_variant_on_page_load(app, tmp_path):
    names = [n for n in app.choices if n != "qint8-mixed"]         # its recipe is the real model's, not the tiny one's
    app.measure.measure(FULL_SLICE, 1, names, fresh=True)
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    for p in app.store.folder.glob("measure-*.json"):
        record = json.loads(p.read_text())
        if record["slice"] == FULL_SLICE and len(record["variants"]) == len(names) + 1:
            shutil.copy(p, shipped / p.name)
    fresh = QuantDemo(replace(app.cfg, cache=str(tmp_path / "new-cache"), shipped_results=str(shipped)))
    out = M(fresh.measure.initial())
    assert "Shipped with the app" in out["status"] and out["slice"] == FULL_SLICE
    assert list(out["table"]["model"]) == ["fp32", *names] and out["variants"] == names
    assert out["size_trade"].count('class="point"') == len(names) + 1
    nothing = QuantDemo(replace(app.cfg, cache=str(tmp_path / "other-cache")))
    assert "No measurement yet" in M(nothing.measure.initial())["status"]


def test_a_generation_runs_between_the_chunks_of_a_long_measurement(app, tmp_path):
    """Ordering, not timing: a Generate started while a measurement runs ends before it."""
    long = tmp_path / "long"
    long.mkdir()
    text = (app.data_dir / "test.txt").read_text()
    (long / "test.txt").write_text(text * 60)                    # ~20,000 tokens of the tiny vocabulary
    slow = QuantDemo(replace(app.cfg, data=str(long)))
    started, events = threading.Event(), []

    def measure():
        slow.measure.measure(FULL_SLICE, 1, ["qint8"], fresh=True,
                     progress=lambda d, t: (started.set(), events.append(("chunk", d))) and None)
        events.append(("measure done", None))

    t = threading.Thread(target=measure, daemon=True)
    t.start()
    assert started.wait(JOIN_S)
    list(slow.side.generate("w1", 50, 1.0, 0, False))
    events.append(("generate done", None))
    t.join(JOIN_S)
    assert not t.is_alive()
    order = [e for e, _ in events if e != "chunk"]
    assert order == ["generate done", "measure done"]
    chunks_after = [d for e, d in events[events.index(("generate done", None)):] if e == "chunk"]
    assert chunks_after                                          # the measurement went on after it


def test_a_long_prompt_is_read_a_chunk_per_turn(app, monkeypatch):
    """A prompt of 300 words is five chunks of reading (64 tokens each): each is a CPU turn of its
    own, not one long call before the first word."""
    from wlm.generate import GenerationConfig
    from wlm.pair import PromptStep, generate_pair
    monkeypatch.setattr("wlm.sidebyside.STREAM_INTERVAL_S", 0.0)        # one step per turn
    prompt = "w1 w2 w3 " * 100
    cfg = GenerationConfig(prompt=prompt, words=5, temperature=1.0, seed=0)
    models = [app.variants.get(n).model for n in ("fp32", "qint8")]
    reading = sum(isinstance(s, PromptStep) for s in generate_pair(models, app.dictionary, cfg, prompt_steps=True))
    assert reading >= 4
    updates = list(app.side.generate(prompt, 5, 1.0, 0, False))
    assert len(updates) == 5 + reading               # a turn (and an update) per chunk read, then per word
    assert "(5 words, 1 thread)" in updates[-1][2]


def test_a_generate_holds_no_cpu_turn_while_its_update_is_sent(app, monkeypatch):
    """Between two updates (while the server sends one, or a client is slow or gone) a Generate
    holds nothing: a whole measurement runs while it is suspended at its first update."""
    monkeypatch.setattr("wlm.sidebyside.STREAM_INTERVAL_S", 0.0)
    gen = app.side.generate("w1", 30, 1.0, 0, False)
    first = next(gen)
    assert "words/s" in first[2] and app.turns.snapshot().running["generate"] == 0
    done = threading.Event()
    t = threading.Thread(target=lambda: (app.measure.measure("2,000 tokens", 1, ["qint8"], fresh=True), done.set()),
                         daemon=True)
    t.start()
    t.join(JOIN_S)
    assert done.is_set(), "the measurement waited for a suspended Generate"
    assert len(list(gen)) == 29


def test_several_variants_in_one_measurement_and_a_variant_in_the_right_pane(app):
    out = M(app.measure.measure("2,000 tokens", 1, ["ort-int8", "qint8-per-channel", "ort-int8"]))
    table = out["table"]
    assert list(table["model"]) == ["fp32", "qint8-per-channel", "ort-int8"]       # once each, fp32 first
    assert list(table["engine"]) == ["torch", "torch", "onnxruntime"]
    assert out["size_trade"].count('class="point"') == 3 and ">ort-int8</text>" in out["speed"]
    assert (table["size MB"][2] < table["size MB"][0]) and 0 < lead(table["top-1 agree"][2]) <= 1
    *_, last = app.side.generate("w1 w2", 30, 1.0, 3, False, "ort-int8")
    assert "p(ort-int8)" in last[0] and "p(ort-int8)" in last[1]
    assert app.side.title("ort-int8") == "## ort-int8 (onnxruntime)" and "DynamicQuantizeLSTM" in app.model_text("ort-int8")


@pytest.mark.parametrize("bad", ["qint9", 3, ["qint8", "nope"], [], "fp32", {"a": 1}])
def test_unknown_variants_are_named_in_the_error(app, bad):
    with pytest.raises(ValueError, match="variant"):
        app.measure.measure("2,000 tokens", 1, bad)
    with pytest.raises(ValueError, match="variant"):
        list(app.side.generate("w1", 3, 1.0, 0, False, bad if bad != [] else "x"))


def test_published_test_file_hash_is_what_the_store_uses_when_it_is_missing(app, tmp_path):
    missing = QuantDemo(replace(app.cfg, data=str(tmp_path / "nothing-here")))
    assert missing.test_sha256() == SHA256["test.txt"]


def test_where_int8_loses_panel_analyses_stores_and_caps(app):
    out = dict(zip(INSPECT_OUTPUTS, app.inspect.inspect("qint8", "2,000 tokens", fresh=True)))
    status, table, sqnr, sens, times = (out[k] for k in ("status", "table", "sqnr", "sensitivity", "time"))
    assert "The part that costs most, quantized alone, is" in status and "Time: fp32" in status
    assert list(table["part"]) == ["embedding", "lstm.0", "lstm.1", "decoder"]
    assert sqnr.count('class="dot"') == 9 and ">fp32</text>" in sqnr            # 3 kinds x 3 parts; embedding fp32
    assert sens.count('class="dot"') == 5 and times.count('class="legend"') == 5  # 5 alone parts; 5 parts of time
    assert times.count('class="bar"') >= 8                                       # 2 models x the parts that took time
    assert ">lstm.1 int8</text>" in sens and ">qint8</text>" in times
    later = QuantDemo(app.cfg).inspect.inspect("qint8", "2,000 tokens")
    assert "Stored result, analysed" in later[0] and later[1].equals(table)
    n = len(app.test_split()) - 1
    capped = QuantDemo(replace(app.cfg, max_live_model_tokens=n, cache=app.cfg.cache + "-other"))
    kept = capped.inspect.inspect("qint8-per-channel", "2,000 tokens", out["shown"])
    assert "runs 10 models, over this shared server's live limit" in kept[0]
    assert kept[1].equals(table) and kept[2] == sqnr and kept[-1] is out["shown"]      # what was shown stays
    assert kept[5:7] == ("qint8", "2,000 tokens")                                       # and its controls
    with pytest.raises(ValueError, match="slice must be one of"):
        app.inspect.inspect("qint8", "3 tokens")
    with pytest.raises(ValueError, match="variant must be one of"):
        app.inspect.inspect("fp32")


def test_weights_on_the_int8_grid(app):
    dec = app.inspect.weight_histogram("decoder")
    assert app.inspect.weight_histogram("decoder") is dec                  # computed once, then from memory
    assert dec.count('class="line"') == 2 and ">per tensor</text>" in dec and ">per channel</text>" in dec
    assert "99% within ±" in dec
    lstm = app.inspect.weight_histogram("lstm.0")
    assert ">weight_ih</text>" in lstm and ">weight_hh</text>" in lstm
    with pytest.raises(ValueError, match="part must be one of"):
        app.inspect.weight_histogram("lstm.7")


def test_a_variant_that_cannot_be_built_keeps_what_is_shown_and_is_named(tmp_path, tiny_dir, tiny_corpus, monkeypatch):
    from wlm import variants
    real, tried = variants.build, []

    def build(name, *a, **kw):
        if name == "qint8-per-channel":
            tried.append(name)
            raise RuntimeError("the child process was killed (out of memory)")
        return real(name, *a, **kw)
    monkeypatch.setattr(variants, "build", build)
    ck = sharp_checkpoint(tmp_path, tiny_corpus)
    app = QuantDemo(AppConfig(checkpoint=str(ck), data=str(tiny_dir), cache=str(tmp_path / "cache"),
                              thread_choices=(1, 2)))
    shown = M(app.measure.measure("2,000 tokens", 1, ["qint8"]))["shown"]
    for _ in range(2):
        out = M(app.measure.measure("2,000 tokens", 1, ["qint8-per-channel"], shown=shown))
        assert out["status"].startswith("qint8-per-channel could not be built on this server")
        assert out["shown"] == shown and out["variants"] == ["qint8"]           # the page and its controls stay
    assert tried == ["qint8-per-channel"]                                      # tried once, then remembered
    assert "qint8-per-channel" in app.variants_note() and "out of memory" in app.variants_note()
    assert "out of memory" in out["details"]
    with pytest.raises(ValueError, match="qint8-per-channel could not be built on this server"):
        list(app.side.generate("w1", 5, 1.0, 0, False, "qint8-per-channel"))
    assert "could not be built" in app.inspect.inspect("qint8-per-channel", "2,000 tokens")[0]


def test_a_recipes_results_are_its_plans_not_its_names(tmp_path, tiny_dir, tiny_corpus, monkeypatch):
    """Re-deriving the recipe must not let the old plan's figures be shown for the new one."""
    from wlm import variants
    ck = sharp_checkpoint(tmp_path, tiny_corpus)
    recipe = tmp_path / "recipe.json"

    def write(lstm1):
        recipe.write_text(json.dumps({"format": "wlm-recipe/1", "plan": {
            "embedding": "fp32", "lstm.0": "int8", "lstm.1": lstm1, "decoder": "int8"}}))
    monkeypatch.setitem(variants.VARIANTS, "qint8-mixed",
                        variants.VariantSpec("qint8-mixed", "torch", "test", variants.PlanFile(recipe)))
    cfg = AppConfig(checkpoint=str(ck), data=str(tiny_dir), cache=str(tmp_path / "cache"), thread_choices=(1, 2))
    write("fp32")
    first = QuantDemo(cfg)
    live = M(first.measure.measure(FULL_SLICE, 1, ["qint8", "qint8-mixed"]))
    assert "Measured live" in live["status"] and set(live["shown"]["plans"]) == {"qint8-mixed"}
    assert "Stored result" in M(QuantDemo(cfg).measure.measure(FULL_SLICE, 1, ["qint8-mixed"]))["status"]
    assert "qint8-mixed" in M(QuantDemo(cfg).measure.initial())["variants"]
    ins = QuantDemo(cfg).inspect.inspect("qint8-mixed", "2,000 tokens")
    assert "Analysed live" in ins[0] and "Stored result" in QuantDemo(cfg).inspect.inspect("qint8-mixed", "2,000 tokens")[0]

    write("int8")                                               # the recipe derived again: another plan
    later = QuantDemo(cfg)
    assert M(later.measure.initial())["variants"] == ["qint8"]   # the old plan's figures are not shown for it
    assert "Measured live" in M(later.measure.measure(FULL_SLICE, 1, ["qint8", "qint8-mixed"]))["status"]
    on_load = M(QuantDemo(cfg).measure.initial())
    assert on_load["variants"] == ["qint8", "qint8-mixed"]
    assert on_load["shown"]["plans"]["qint8-mixed"] == later.plans(["qint8-mixed"])["qint8-mixed"]
    assert "Analysed live" in QuantDemo(cfg).inspect.inspect("qint8-mixed", "2,000 tokens")[0]


def test_a_subset_says_whose_cost_it_shows(app):
    app.measure.measure("2,000 tokens", 1, ["qint8-linear-only", "qint8-per-channel"], fresh=True)
    whole = M(app.measure.measure("2,000 tokens", 1, ["qint8-per-channel", "qint8-linear-only"]))["details"]
    part = M(app.measure.measure("2,000 tokens", 1, ["qint8-linear-only"]))["details"]
    assert "Cost of measuring:" in whole and "~95% interval" in whole
    assert "Cost of measuring (of the measurement of 3 models this result is taken from)" in part


def test_a_record_measured_with_other_library_versions_says_so(app, tmp_path):
    """E.g. a Space that got PyPI's CUDA build of the same torch: its results are not this build's."""
    mine = QuantDemo(replace(app.cfg, cache=str(tmp_path / "cache")))
    out = M(mine.measure.measure("2,000 tokens", 1, ["qint8-lstm-only"]))
    assert "other library versions" not in out["status"]
    [path] = mine.store.folder.glob("measure-*.json")
    record = json.loads(path.read_text())
    record["versions"]["torch"] = record["versions"]["torch"].split("+")[0] + "+cu128"
    path.write_text(json.dumps(record))
    shown = M(QuantDemo(mine.cfg).measure.measure("2,000 tokens", 1, ["qint8-lstm-only"]))
    assert "Stored result" in shown["status"]
    assert "measured with other library versions: torch " in shown["status"] and "CUDA 12.8 build" in shown["status"]


def test_a_finished_generate_says_why_per_word_speed_ups_are_larger(app, tmp_path):
    """From the newest stored bench that profiled fp32 and the variant per call (wlm.bench.call_profile)."""
    from wlm.bench import call_profile
    mine = QuantDemo(replace(app.cfg, cache=str(tmp_path / "cache")))
    notes = list(mine.side.generate("w1 w2", 5, 1.0, 0, False, "qint8"))[-1][4]
    assert "Why the panes' speeds differ" not in notes                     # no profile stored yet
    record = M(mine.measure.measure("2,000 tokens", 1, ["qint8"]))["shown"]
    models = {n: mine.variants.get(n).model for n in ("fp32", "qint8")}
    calls = call_profile(models, mine.test_split(), seconds=0.05)
    record = {**record, "speed": {n: {"calls": calls[n]} for n in models}, "threads": 1}
    mine.keep(mine.store, {k: v for k, v in record.items() if k != "shipped"})
    later = QuantDemo(mine.cfg)
    notes = list(later.side.generate("w1 w2", 5, 1.0, 0, False, "qint8"))[-1][4]
    fp, q = calls["fp32"]["1"]["ms_per_token"], calls["qint8"]["1"]["ms_per_token"]
    assert f"fp32 {fp:.1f} ms per word against qint8 {q:.1f} ms ({fp / q:.1f}x)" in notes
    assert "Measure's evaluation calls run 25 tokens" in notes


@pytest.mark.parametrize("variant", ["", None])
def test_your_text_without_a_variant_scores_the_default_one_and_says_so(app, variant):
    _, summary = app.your_text.run("w1 w2 w3 w4", variant)
    assert "qint8 perplexity" in summary and "None perplexity" not in summary and " perplexity" in summary


@pytest.mark.parametrize("bad", ["fp32", "qint9", 3])
def test_your_text_refuses_a_variant_not_offered(app, bad):
    with pytest.raises(ValueError, match="variant must be one of"):
        app.your_text.run("w1 w2 w3 w4", bad)


@pytest.mark.parametrize("field, args", [("words", ("w1", 10**400, 1.0, 0)), ("temperature", ("w1", 5, 10**400, 0)),
                                         ("seed", ("w1", 5, 1.0, 10**400))])
def test_numbers_too_large_for_a_float_get_the_message_naming_the_field(app, field, args):
    """10**400 is valid JSON; float() of it raises OverflowError, not ValueError."""
    with pytest.raises(ValueError, match=f"^{field} must be"):
        next(app.side.generate(*args, False, "qint8"))
