"""demo.py served by a real Gradio server, driven through gradio_client."""
import pytest
from gradio_client import Client

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def client(demo_server):
    return Client(demo_server, verbose=False, analytics_enabled=False)


def test_only_generate_measure_inspect_score_and_recipe_are_public(client):
    assert set(client.view_api(print_info=False, return_format="dict")["named_endpoints"]) == {
        "/generate", "/measure", "/inspect", "/score", "/recipe"}


def test_a_recipe_through_the_api_then_written_with(client):
    """The tiny model is 16 wide (no groups of 32): a per-row recipe, then that recipe in the right pane."""
    status, dropdown = client.predict("int3-row", "int2-row", "int2-row", "int2-row", "rtn", api_name="/recipe")
    variant = dropdown["value"]                       # the top dropdown's update: now offering the recipe
    assert variant in [c[1] for c in dropdown["choices"]] and variant == "recipe: embedding=int3-row lstm=int2-row decoder=int2-row rounding=rtn"
    assert "MB** packed file" in status and "no speed claimed" in status
    *_, last = list(client.submit("w1 w2", 12, 1.0, 5, True, variant, api_name="/generate"))
    assert last[1].count('class="wlm-word') == 12 and "no speed claimed" in last[3]
    from gradio_client.exceptions import AppError
    with pytest.raises(AppError, match="decoder must be fp32, int<bits>-row"):
        client.predict("int3-row", "int2-row", "int2-row", "int9-row", "rtn", api_name="/recipe")
    with pytest.raises(AppError, match="group 32 does not divide the 16 columns"):
        client.predict("int3-g32", "fp32", "fp32", "fp32", "rtn", api_name="/recipe")


def test_score_through_the_api(client):
    html, summary = client.predict("w1 w2 w3 w4 w5 w6", "qint8", api_name="/score")
    assert html.count('class="wlm-w') >= 6 and "fp32 perplexity" in summary and "qint8 perplexity" in summary
    for bad in ("", 5, None, "x" * 3000):
        with pytest.raises(Exception, match="text"):
            client.predict(bad, "qint8", api_name="/score")
    with pytest.raises(Exception, match="variant"):
        client.predict("w1 w2", "qint9", api_name="/score")


def test_inspect_through_the_api(client):
    status, table, sqnr, sens, times, variant, slice_ = client.predict("qint8", "2,000 tokens", api_name="/inspect")
    assert "The part that costs most" in status and [r[0] for r in table["data"]][0] == "embedding"
    assert 'class="dot"' in sqnr and 'class="dot"' in sens and 'class="bar"' in times
    assert (variant, slice_) == ("qint8", "2,000 tokens")


def test_generate_streams_and_is_reproducible(client):
    job = client.submit("w1 w2", 1000, 1.0, 11, False, api_name="/generate")
    updates = list(job)
    final = job.result()
    assert len(updates) >= 2                               # intermediate updates arrived
    left, right, ls, rs, notes, parting = final
    assert "wlm-text" in left and "wlm-text" in right and "words/s" in ls and "words/s" in rs
    assert len(updates[0][0]) < len(left)
    again = client.predict("w1 w2", 1000, 1.0, 11, False, api_name="/generate")
    assert again[:2] == final[:2]


def test_measure_on_a_small_slice(client):
    scorecard, table, size, speed, kl, size_trade, speed_trade, status, details, slice_, threads, variants = \
        client.predict("2,000 tokens", 1, ["qint8"], api_name="/measure")
    assert [row[0] for row in table["data"]] == ["fp32", "qint8"]
    assert "test tokens" in status and 'data-field="speedup"' in scorecard
    assert ">fp32</text>" in speed and ">qint8</text>" in speed
    assert (slice_, threads, variants) == ("2,000 tokens", 1, ["qint8"])


GOOD_GENERATE = ["w1", 5, 1.0, 0, False, "qint8"]
BAD_GENERATE = [  # (position, value, field named in the message)
    *[(0, v, "prompt") for v in (123, [1], {"a": 1}, True, "x" * 3000, 4.5)],
    *[(1, v, "words") for v in (0, -5, 1001, 2.5, "many", "", None, "1e9", True, [], "10 words", {"n": 1}, "\x07")],
    *[(2, v, "temperature") for v in (-1, 11, "hot", "", None, [1], True, "1e999", {"t": 1})],
    *[(3, v, "seed") for v in (-1, 2**63, "x", "", None, 1.5, True, [0], 2.0**60, "-1", "9" * 30)],
    *[(4, v, "raw") for v in ("yes", 2, None, "", [True])],
    *[(5, v, "variant") for v in ("qint9", 3, ["qint8"], "fp32", "../etc/passwd", "\x00")],
]
GOOD_MEASURE = ["2,000 tokens", 1, ["qint8"]]
GOOD_INSPECT = ["qint8", "2,000 tokens"]
BAD_INSPECT = [*[(0, v, "variant") for v in ("fp32", "qint9", 3, ["qint8"], "QINT8")],
               *[(1, v, "slice") for v in ("5,000 tokens", 2000, None, "", ["2,000 tokens"])]]
BAD_MEASURE = [
    *[(0, v, "slice") for v in ("all of it", 5, "", None, ["2,000 tokens"], "2000", "\x00", "2,000 TOKENS", 0, 1.5,
                                True, {"s": 1}, "all", " 2,000 tokens", "2,000 tokens ", "x" * 10000)],
    *[(1, v, "threads") for v in (0, -1, 64, 65, "four", 1.5, True, [1], {"a": 1}, "1e3", 100, "NaN", [])],
    *[(2, v, "variant") for v in ([], "qint9", ["qint9"], [1], None, ["fp32"], [["qint8"]], {"qint8": 1},
                                  ["qint8", 5], ["qint8", None], "x" * 1000, [{"a": 1}], ["ort-int8 "], "QINT8")],
]


@pytest.mark.parametrize("endpoint,good,pos,value,field",
                         [("/generate", GOOD_GENERATE, *bad) for bad in BAD_GENERATE]
                         + [("/measure", GOOD_MEASURE, *bad) for bad in BAD_MEASURE]
                         + [("/inspect", GOOD_INSPECT, *bad) for bad in BAD_INSPECT])
def test_every_argument_is_checked(client, endpoint, good, pos, value, field):
    args = list(good)
    args[pos] = value
    with pytest.raises(Exception, match=field):
        client.predict(*args, api_name=endpoint)


def test_the_server_answers_after_all_bad_input(client):
    assert len(BAD_GENERATE) >= 40 and len(BAD_MEASURE) >= 40
    assert "words/s" in client.predict(*GOOD_GENERATE, api_name="/generate")[2]
    assert "test tokens" in client.predict(*GOOD_MEASURE, api_name="/measure")[7]


def test_a_generate_sent_during_a_long_measurement_is_answered_before_it_ends(client):
    import sys
    app = sys.modules["demo"].app
    job = client.submit("all (245,569 tokens)", 1, ["qint8-lstm-only"], api_name="/measure")
    assert app.turns.wait_until(lambda s: s.running["chunk"], 60)      # the measurement is under way
    out = client.predict("w2", 20, 1.0, 1, False, "qint8", api_name="/generate")
    assert "words/s" in out[2]
    assert not job.done()                             # answered while the measurement still ran
    assert "test tokens" in job.result(timeout=300)[7]


def test_bad_input_gets_a_message_and_the_server_keeps_serving(client):
    with pytest.raises(Exception, match="prompt is 3,000 characters long|maximum|2000"):
        client.predict("x" * 3000, 10, 1.0, 0, False, api_name="/generate")
    with pytest.raises(Exception, match="minimum|words"):
        client.predict("x", 0, 1.0, 0, False, api_name="/generate")
    with pytest.raises(Exception):
        client.predict("x", "many", 1.0, 0, False, api_name="/generate")
    with pytest.raises(Exception, match="slice|choice|2,000 tokens"):
        client.predict("all of it", 1, ["qint8"], api_name="/measure")
    ok = client.predict("w3", 5, 0, 0, False, api_name="/generate")
    assert "words/s" in ok[2]


def process_threads_and_rss_mb() -> tuple[int, float]:
    import os
    rss = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmRSS:"))
    return len(os.listdir("/proc/self/task")), rss / 1024


def test_threads_64_is_refused_and_makes_nothing(client):
    """20 calls of /measure at 64 threads with an ONNX Runtime variant: each gets the message
    naming threads and the counts allowed; the server's threads and memory stay where they were."""
    import sys
    client.predict("2,000 tokens", 1, ["ort-fp32"], api_name="/measure")       # its session exists
    before = process_threads_and_rss_mb()
    for _ in range(20):
        with pytest.raises(Exception, match=r"threads must be one of 1(, 2)? \(the page's choices 1, 2, 4"):
            client.predict("2,000 tokens", 64, ["ort-fp32"], api_name="/measure")
    after = process_threads_and_rss_mb()
    assert after[0] <= before[0] + 2 and after[1] < before[1] + 30, (before, after)
    sessions = sys.modules["demo"].app.variants.get("ort-fp32").model._sessions
    assert set(sessions) <= set(sys.modules["demo"].app.thread_choices)


@pytest.fixture
def own_server(demo_server, tmp_path, tiny_dir, tiny_corpus):
    """A second real server over an app the test configures (``serve(app)``)."""
    import sys
    servers = []

    def serve(app):
        demo = sys.modules["demo"].build_demo(app)
        _, url, _ = demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True, ssr_mode=False)
        servers.append(demo)
        return Client(url, verbose=False, analytics_enabled=False)

    yield serve
    for demo in servers:
        demo.close()


def tiny_app(tmp_path, tiny_dir, tiny_corpus, **kw):
    from tests.test_app import sharp_checkpoint
    from wlm.app import AppConfig, QuantDemo
    ck = sharp_checkpoint(tmp_path, tiny_corpus)
    return QuantDemo(AppConfig(checkpoint=str(ck), data=str(tiny_dir), cache=str(tmp_path / "cache"), **kw))


def test_every_model_call_runs_at_the_thread_count_the_event_reports(own_server, tmp_path, tiny_dir, tiny_corpus,
                                                                      monkeypatch):
    """A model that records torch.get_num_threads() in every call, behind a real server: a
    measurement at 2 threads, then Generates (1 thread, the app's) with an update per word,
    four at once so that their steps run on several worker threads: every call at its count.
    The server's threads start at 2, as in a server process on 2 CPUs (torch's default)."""
    import torch
    monkeypatch.setattr("wlm.sidebyside.STREAM_INTERVAL_S", 0.0)
    torch.set_num_threads(2)                       # the worker threads made from now on start at 2
    try:
        check_thread_counts(own_server, tmp_path, tiny_dir, tiny_corpus)
    finally:
        torch.set_num_threads(1)


def check_thread_counts(own_server, tmp_path, tiny_dir, tiny_corpus):
    import torch
    app = tiny_app(tmp_path, tiny_dir, tiny_corpus, thread_choices=(1, 2))
    seen = []
    models = [app.variants.get(name).model for name in ("fp32", "qint8", "ort-int8")]      # built first
    for model in models:
        forward = model.forward

        def recording(*args, forward=forward, **kw):
            seen.append(torch.get_num_threads())
            return forward(*args, **kw)
        model.forward = recording
    client = own_server(app)
    table = client.predict("2,000 tokens", 2, ["qint8", "ort-int8"], api_name="/measure")[1]
    assert [r[0] for r in table["data"]] == ["fp32", "qint8", "ort-int8"]
    assert seen and set(seen) == {2}
    seen.clear()
    jobs = [client.submit("w1 w2", 60, 1.0, s, False, v, api_name="/generate")
            for s, v in enumerate(["qint8", "ort-int8", "qint8", "ort-int8"])]
    outs = [j.result(timeout=120) for j in jobs]
    assert all("(60 words, 1 thread)" in o[2] for o in outs)
    assert len(seen) >= 4 * 60 and set(seen) == {1}
    assert set(app.variants.get("ort-int8").model._sessions) == {1, 2}


def test_a_generate_does_not_wait_for_another_visitors_variant_build(own_server, tmp_path, tiny_dir, tiny_corpus,
                                                                      monkeypatch):
    """Visitor A's first ort-int8-per-channel is being built (held open by the test); visitor B's
    qint8 Generate is answered meanwhile; then A's build finishes and A gets its text."""
    import threading
    import wlm.variants
    app = tiny_app(tmp_path, tiny_dir, tiny_corpus)
    building, release = threading.Event(), threading.Event()
    real_build = wlm.variants.build

    def slow_build(name, *args, **kw):
        if name == "ort-int8-per-channel":
            building.set()
            assert release.wait(120)
        return real_build(name, *args, **kw)
    monkeypatch.setattr(wlm.variants, "build", slow_build)
    client = own_server(app)
    a = client.submit("w1", 20, 1.0, 0, False, "ort-int8-per-channel", api_name="/generate")
    assert building.wait(60)
    b = client.submit("w2", 20, 1.0, 1, False, "qint8", api_name="/generate")
    out = b.result(timeout=60)
    assert "words/s" in out[3] and not a.done() and not app.variants.is_built("ort-int8-per-channel")
    release.set()
    assert "ort-int8-per-channel" in a.result(timeout=120)[3]
