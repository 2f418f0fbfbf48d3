"""demo.py served by a real Gradio server, driven through gradio_client."""
import pytest
from gradio_client import Client

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def client(demo_server):
    return Client(demo_server, verbose=False, analytics_enabled=False)


def test_only_generate_and_measure_are_public(client):
    assert set(client.view_api(print_info=False, return_format="dict")["named_endpoints"]) == {"/generate", "/measure"}


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
    table, size, times, kl, size_trade, speed_trade, status, machine = client.predict(
        "2,000 tokens", 1, ["qint8"], api_name="/measure")
    assert [row[0] for row in table["data"]] == ["fp32", "qint8"]
    assert "test tokens" in status
    assert [row[0] for row in times["data"]] == ["fp32", "qint8"]


GOOD_GENERATE = ["w1", 5, 1.0, 0, False, "qint8"]
BAD_GENERATE = [  # (position, value, field named in the message)
    *[(0, v, "prompt") for v in (123, [1], {"a": 1}, True, "x" * 3000, 4.5)],
    *[(1, v, "words") for v in (0, -5, 1001, 2.5, "many", "", None, "1e9", True, [], "10 words", {"n": 1}, "\x07")],
    *[(2, v, "temperature") for v in (-1, 11, "hot", "", None, [1], True, "1e999", {"t": 1})],
    *[(3, v, "seed") for v in (-1, 2**63, "x", "", None, 1.5, True, [0])],
    *[(4, v, "raw") for v in ("yes", 2, None, "", [True])],
    *[(5, v, "variant") for v in ("qint9", 3, ["qint8"], "fp32", "../etc/passwd", "\x00")],
]
GOOD_MEASURE = ["2,000 tokens", 1, ["qint8"]]
BAD_MEASURE = [
    *[(0, v, "slice") for v in ("all of it", 5, "", None, ["2,000 tokens"], "2000", "\x00", "2,000 TOKENS", 0, 1.5,
                                True, {"s": 1}, "all", " 2,000 tokens", "2,000 tokens ", "x" * 10000)],
    *[(1, v, "threads") for v in (0, -1, 65, "four", 1.5, True, [1], {"a": 1}, "1e3", 100, "NaN", [])],
    *[(2, v, "variant") for v in ([], "qint9", ["qint9"], [1], None, ["fp32"], [["qint8"]], {"qint8": 1},
                                  ["qint8", 5], ["qint8", None], "x" * 1000, [{"a": 1}], ["ort-int8 "], "QINT8")],
]


@pytest.mark.parametrize("endpoint,good,pos,value,field",
                         [("/generate", GOOD_GENERATE, *bad) for bad in BAD_GENERATE]
                         + [("/measure", GOOD_MEASURE, *bad) for bad in BAD_MEASURE])
def test_every_argument_is_checked(client, endpoint, good, pos, value, field):
    args = list(good)
    args[pos] = value
    with pytest.raises(Exception, match=field):
        client.predict(*args, api_name=endpoint)


def test_the_server_answers_after_all_bad_input(client):
    assert len(BAD_GENERATE) >= 40 and len(BAD_MEASURE) >= 40
    assert "words/s" in client.predict(*GOOD_GENERATE, api_name="/generate")[2]
    assert "test tokens" in client.predict(*GOOD_MEASURE, api_name="/measure")[6]


def test_a_generate_sent_during_a_long_measurement_is_answered_before_it_ends(client):
    import time
    job = client.submit("all (245,569 tokens)", 1, ["qint8-lstm-only"], api_name="/measure")
    time.sleep(1.0)                                   # the measurement is under way
    assert not job.done()
    out = client.predict("w2", 20, 1.0, 1, False, "qint8", api_name="/generate")
    assert "words/s" in out[2]
    assert not job.done()                             # answered while the measurement still ran
    assert "test tokens" in job.result()[6]


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
