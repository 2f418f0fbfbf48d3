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
