"""The demo's event handlers (wlm.app), called directly: no server."""
import pytest

from wlm.app import DEFAULT_SLICE, SLICES, TABLE_COLUMNS, AppConfig, QuantDemo


@pytest.fixture(scope="module")
def app(tmp_path_factory, tiny_dir, tiny_corpus):
    import torch
    from wlm.checkpoint import save_checkpoint
    from wlm.model import LSTMModel, ModelConfig
    torch.manual_seed(0)
    model = LSTMModel(ModelConfig(len(tiny_corpus.dictionary), ninp=16, nhid=12, nlayers=2))
    ck = save_checkpoint(tmp_path_factory.mktemp("ck") / "m.safetensors", model, tiny_corpus.dictionary)
    return QuantDemo(AppConfig(checkpoint=str(ck), data=str(tiny_dir), cache=str(tmp_path_factory.mktemp("cache"))))


def test_generate_streams_both_panes_and_finishes_with_stats(app, monkeypatch):
    monkeypatch.setattr("wlm.app.STREAM_INTERVAL_S", 0.0)        # every word an update
    updates = list(app.generate("w1 w2 zebra", 20, 1.0, 4, False))
    assert len(updates) == 20
    left, right, ls, rs, notes, parting = updates[-1]
    assert left.count("wlm-prompt") == 3 and "zebra" in left
    assert left.count('class="wlm-word') == 20 and left.count("data-p-ref=") == 20 and "title=" in left
    assert "Step by step" in notes and "agreement of" in notes
    assert "**fp32**" in ls and "words/s" in ls and "ms per word" in ls and "**qint8**" in rs
    assert "`zebra`" in notes
    assert len(updates[5][0]) < len(left)                          # panes grow word by word
    again = list(app.generate("w1 w2 zebra", 20, 1.0, 4, False))[-1]
    assert again[:2] == (left, right)                              # same seed, same text


def test_parting_is_marked_with_both_top_words(app):
    parted = same = 0
    for seed in range(6):
        *_, last = app.generate("", 60, 1.5, seed, False)
        left, right, _, _, notes, parting = last
        if "wlm-diverge" in left:
            parted += 1
            assert "Identical for the first" in notes and "wlm-diverge" in right
            assert "Where the texts part" in parting and parting.count("<tr>") >= 6 and parting.count("◂") == 2
        else:
            same += 1
            assert "same 60 words" in notes and parting == ""
    assert parted + same == 6


def test_raw_toggle_shows_tokens(app):
    *_, last = app.generate("w1 @-@ w2", 3, 0, 0, True)
    assert "@-@" in last[0]
    *_, last = app.generate("w1 @-@ w2", 3, 0, 0, False)
    assert "@-@" not in last[0]


@pytest.mark.parametrize("args,field", [
    (("x", 0, 1.0, 0), "words"), (("x", 1001, 1.0, 0), "words"), (("x", 2.5, 1.0, 0), "words"),
    (("x", 10, -1, 0), "temperature"), (("x", 10, float("nan"), 0), "temperature"), (("x", 10, 1.0, -3), "seed"),
    (("x", "many", 1.0, 0), "words"), ((123, 10, 1.0, 0), "prompt"), (("x" * 2001, 10, 1.0, 0), "prompt"),
])
def test_bad_generation_input_is_a_clear_error(app, args, field):
    with pytest.raises(ValueError, match=field):
        list(app.generate(*args))


def test_measure_fills_table_plots_and_status(app):
    calls = []
    table, size, times, kl, trade, _, status, machine = app.measure("2,000 tokens", 1,
                                                                     progress=lambda d, t: calls.append((d, t)))
    assert list(table.columns) == TABLE_COLUMNS and list(table["model"]) == ["fp32", "qint8"]
    assert list(table["engine"]) == ["torch", "torch"] and trade.count('class="point"') == 2
    assert "<title>qint8: size (MB)" in trade and ">fp32</text>" in trade
    n = min(2000, len(app._test_split())) - 1
    assert f"{n:,} test tokens" in status and ("faster" in status or "slower" in status)
    assert table["size MB"][1] < table["size MB"][0]
    assert set(size["part"]) == {"embedding", "LSTM", "decoder"} and list(times["model"]) == ["fp32", "qint8"]
    assert (times["seconds"] > 0).all() and calls[-1][0] == calls[-1][1]
    assert 0 < table["top-1 agree"][1] <= 1 and 0 < table["overlap (1-TV)"][1] <= 1 and "ranks the same word" in status
    assert set(kl["model"]) == {"qint8"} and len(kl) > 10 and (kl["KL (nats)"] >= 0).all()
    assert "threads 1" in machine and "quantized engine" in machine
    assert "not the published WikiText-2" in status            # the tiny corpus is not WikiText-2


def test_measure_rejects_unknown_slice(app):
    with pytest.raises(ValueError, match="slice must be one of"):
        app.measure("all of it")
    assert "all (245,569 tokens)" in SLICES


def test_without_data_and_offline_the_panel_says_how_to_fix_it(app, tmp_path, monkeypatch):
    monkeypatch.setenv("WLM_DATA_MIRROR", "http://127.0.0.1:9")        # nothing listens: offline
    empty = QuantDemo(AppConfig(checkpoint=str(app.cfg.checkpoint), data=str(tmp_path / "none"), cache=app.cfg.cache))
    assert "Measure** fetches test.txt" in empty.data_status()
    table, size, times, kl, trade, _, status, _ = empty.measure()
    assert table.empty and list(table.columns) == TABLE_COLUMNS and len(size) == 6 and times.empty
    assert kl["KL (nats)"].isna().all() and "no measurement yet" in trade      # placeholders: no points
    assert "Could not fetch WikiText-2's test split" in status and "WLM_DATA" in status
    assert "\n" not in status and not list((tmp_path / "none").glob("*"))        # one line, nothing left


@pytest.mark.wikitext
def test_measure_fetches_the_test_split_on_demand(tmp_path, server, monkeypatch):
    from tests.conftest import SHIPPED_CHECKPOINT
    target = QuantDemo(AppConfig(checkpoint=str(SHIPPED_CHECKPOINT), data=str(tmp_path / "wt2"),
                                 cache=str(tmp_path / "cache")))
    monkeypatch.setenv("WLM_DATA_MIRROR", f"{server}/corrupt")
    status = target.measure("2,000 tokens", 1)[6]
    assert "Could not fetch" in status and "sha256 mismatch" in status and not (tmp_path / "wt2" / "test.txt").exists()
    monkeypatch.setenv("WLM_DATA_MIRROR", f"{server}/good")
    seen = []
    table, *_, status, _ = target.measure("2,000 tokens", 1, download_progress=lambda name: lambda d, t: seen.append(name))
    assert seen and set(seen) == {"test.txt"} and sorted(p.name for p in (tmp_path / "wt2").iterdir()) == ["test.txt"]
    assert list(table["model"]) == ["fp32", "qint8"] and "not the published" not in status


def test_measurements_are_stored_and_shown_to_later_visitors(app, tmp_path):
    before = set(app.store.folder.glob("*.json")) if app.store.folder.exists() else set()
    live = app.measure("2,000 tokens", 1, ["qint8-lstm-only"], fresh=True)
    assert "Stored result" not in live[6]
    files = set(app.store.folder.glob("measure-*.json")) - before
    assert len(files) <= 1 and app.store.folder.is_dir() and not list(app.store.folder.glob("*.part"))
    later = QuantDemo(app.cfg)                                   # a new process, same cache folder
    shown = later.measure("2,000 tokens", 1, ["qint8-lstm-only"])
    assert "Stored result, measured" in shown[6] and shown[0].equals(live[0])
    again = later.measure("2,000 tokens", 1, ["qint8-lstm-only"], fresh=True)
    assert "Stored result" not in again[6]
    app.measure(DEFAULT_SLICE, 1, ["qint8"])
    assert "Stored result" in QuantDemo(app.cfg).initial_view()[6]


def test_slices_over_the_live_cap_come_only_from_the_store(app):
    from dataclasses import replace
    capped = QuantDemo(replace(app.cfg, max_measure_tokens=100))
    status = capped.measure("2,000 tokens", 1, ["qint8-linear-only"], fresh=False)[6]
    assert "over this server's live limit of 100 tokens" in status
    app.measure("2,000 tokens", 1, ["qint8-linear-only"])       # measured where there is no cap...
    assert "Stored result" in capped.measure("2,000 tokens", 1, ["qint8-linear-only"])[6]   # ...shown here


def test_a_generation_runs_between_the_chunks_of_a_long_measurement(app, tmp_path):
    """Ordering, not timing: a Generate started while a measurement runs ends before it."""
    import threading
    long = tmp_path / "long"
    long.mkdir()
    text = (app.data_dir / "test.txt").read_text()
    (long / "test.txt").write_text(text * 60)                    # ~20,000 tokens of the tiny vocabulary
    slow = QuantDemo(AppConfig(checkpoint=app.cfg.checkpoint, data=str(long), cache=app.cfg.cache))
    started, events = threading.Event(), []

    def measure():
        slow.measure("all (245,569 tokens)", 1, ["qint8"], fresh=True,
                     progress=lambda d, t: (started.set(), events.append(("chunk", d))) and None)
        events.append(("measure done", None))

    t = threading.Thread(target=measure)
    t.start()
    assert started.wait(30)
    list(slow.generate("w1", 50, 1.0, 0, False))
    events.append(("generate done", None))
    t.join()
    order = [e for e, _ in events if e != "chunk"]
    assert order == ["generate done", "measure done"]
    chunks_after = [d for e, d in events[events.index(("generate done", None)):] if e == "chunk"]
    assert chunks_after                                          # the measurement went on after it


def test_several_variants_in_one_measurement_and_a_variant_in_the_right_pane(app):
    table, size, times, kl, trade, speed, status, _ = app.measure("2,000 tokens", 1,
                                                                  ["ort-int8", "qint8-per-channel", "ort-int8"])
    assert list(table["model"]) == ["fp32", "ort-int8", "qint8-per-channel"]       # once each, fp32 first
    assert list(table["engine"]) == ["torch", "onnxruntime", "torch"]
    assert set(size["model"]) == {"fp32", "ort-int8", "qint8-per-channel"} and trade.count('class="point"') == 3
    assert (table["size MB"][1] < table["size MB"][0]) and 0 < table["top-1 agree"][1] <= 1
    *_, last = app.generate("w1 w2", 30, 1.0, 3, False, "ort-int8")
    assert "p(ort-int8)" in last[0] and "p(ort-int8)" in last[1]
    assert app.pane_title("ort-int8") == "### ort-int8 (onnxruntime)" and "DynamicQuantizeLSTM" in app.model_text("ort-int8")


@pytest.mark.parametrize("bad", ["qint9", 3, ["qint8", "nope"], [], "fp32", {"a": 1}])
def test_unknown_variants_are_named_in_the_error(app, bad):
    with pytest.raises(ValueError, match="variant"):
        app.measure("2,000 tokens", 1, bad)
    with pytest.raises(ValueError, match="variant"):
        list(app.generate("w1", 3, 1.0, 0, False, bad if bad != [] else "x"))
