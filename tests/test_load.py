"""The load command (wlm.load) against the real demo server, bounded and on loopback."""
import pytest

from wlm.load import check_loopback, run_load, run_loop

pytestmark = pytest.mark.server


@pytest.mark.parametrize("url", ["http://10.0.0.1:7860/", "http://192.168.1.2/", "http://example.com/",
                                 "http://8.8.8.8:80/", "http:///"])
def test_only_loopback_targets(url):
    with pytest.raises(ValueError, match="loopback"):
        check_loopback(url)
    with pytest.raises(ValueError, match="loopback"):
        run_load(url, generate_users=1, measure_users=0)


@pytest.mark.parametrize("url", ["http://127.0.0.1:7860/", "http://localhost:1/", "http://[::1]:80/"])
def test_loopback_is_allowed(url):
    check_loopback(url)


def test_a_small_load_run_reports_every_request(demo_server):
    import os
    out = run_load(demo_server, generate_users=3, measure_users=1, words=10, slice_label="2,000 tokens",
                   deadline_s=120, pid=os.getpid())
    assert out["generate"]["ok"] == 3 and out["measure"]["ok"] == 1 and out["unfinished"] == 0
    assert out["generate"]["errors"] == 0 and out["generate"]["refusals"] == 0
    assert 0 < out["generate"]["p50_s"] <= out["generate"]["p95_s"]
    assert out["rss_mb_before"] > 0 and out["rss_mb_after"] > 0
    with pytest.raises(ValueError, match="users"):
        run_load(demo_server, generate_users=65)


def test_a_short_loop_of_generates_with_a_measurement(demo_server):
    out = run_loop(demo_server, generate_users=3, seconds=8, words=10, slice_label="2,000 tokens", grace_s=120)
    assert out["generates"] >= 3 and out["generate"]["errors"] == 0 and out["unfinished"] == 0
    assert out["measure"]["ok"] == 1 and out["measure_done_at_s"] is not None
    assert 0 < out["generate"]["p50_s"] <= out["generate"]["p95_s"]
    with pytest.raises(ValueError, match="loopback"):
        run_loop("http://10.0.0.1:7860/", generate_users=1, seconds=1)
