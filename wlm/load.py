"""A bounded load test of the demo, on loopback only: N generate users and M measure users at
once, then (optionally) how long one Generate waits while a full-split measurement runs; or,
with ``--loop-seconds S``, N users calling Generate again and again for S seconds while one
measurement runs: does it finish, and how long do the Generates take?

    python -m wlm load --generate-users 16 --measure-users 2        # launches demo.py itself
    python -m wlm load --generate-users 8 --loop-seconds 120         # a stream of Generates
    python -m wlm load --url http://127.0.0.1:7860/                  # or a running one (loopback)
"""
from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from .data import FULL_SLICE

ROOT = Path(__file__).resolve().parent.parent


def check_loopback(url: str) -> None:
    """Refuse any target that is not this machine's loopback."""
    host = urlparse(url).hostname or ""
    try:
        ok = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"url must point at this machine's loopback (127.0.0.0/8, ::1, localhost), got {url!r}")


def rss_mb(pid: int | None) -> float | None:
    """Resident memory of a process (Linux /proc), in MB."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    refusals: int = 0

    def summary(self) -> dict:
        v = sorted(self.latencies)
        pick = (lambda q: v[min(len(v) - 1, int(q * len(v)))]) if v else (lambda q: None)
        return {"ok": len(v), "errors": len(self.errors), "refusals": self.refusals, "p50_s": pick(0.5),
                "p95_s": pick(0.95), "first_errors": self.errors[:3]}


def _user(client_factory, stats: Stats, lock, call) -> None:
    try:
        client = client_factory()
        t0 = time.perf_counter()
        call(client)
        dt = time.perf_counter() - t0
        with lock:
            stats.latencies.append(dt)
    except Exception as e:  # a refused or failed request is a result here, not a crash
        msg = str(e)
        with lock:
            if "queue" in msg.lower() and "full" in msg.lower():
                stats.refusals += 1
            else:
                stats.errors.append(msg[:200])


def run_load(url: str, *, generate_users: int = 16, measure_users: int = 2, words: int = 100,
             slice_label: str = "5,000 tokens", deadline_s: float = 600.0, pid: int | None = None,
             full_split_wait: bool = False) -> dict:
    """One request per user, all at once; bounded by ``deadline_s``. Returns the figures."""
    check_loopback(url)
    if not 0 <= generate_users <= 64 or not 0 <= measure_users <= 8:
        raise ValueError("generate users must be 0..64 and measure users 0..8")
    from gradio_client import Client

    def factory():
        return Client(url, verbose=False, analytics_enabled=False)

    lock = threading.Lock()
    gen, meas = Stats(), Stats()
    before = rss_mb(pid)
    threads = [threading.Thread(target=_user, daemon=True, args=(factory, gen, lock, lambda c, s=s: c.predict(
                   "The game was released in", words, 1.0, s, False, "qint8", api_name="/generate")))
               for s in range(generate_users)]
    threads += [threading.Thread(target=_user, daemon=True, args=(factory, meas, lock, lambda c: c.predict(
                    slice_label, 1, ["qint8"], api_name="/measure")))
                for _ in range(measure_users)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, deadline_s - (time.perf_counter() - t0)))
    unfinished = sum(t.is_alive() for t in threads)
    out = {"generate": gen.summary(), "measure": meas.summary(), "unfinished": unfinished,
           "wall_s": time.perf_counter() - t0, "rss_mb_before": before, "rss_mb_after": rss_mb(pid)}
    if full_split_wait:
        out["generate_wait_during_full_split_s"] = _wait_during_full_split(factory, words)
    return out


def run_loop(url: str, *, generate_users: int = 8, seconds: float = 120.0, words: int = 100,
             slice_label: str = "5,000 tokens", pid: int | None = None, grace_s: float = 600.0) -> dict:
    """``generate_users`` clients call /generate in a loop for ``seconds`` while one /measure of
    ``slice_label`` runs (sent at the start). Returns the Generates' latencies, the measurement's
    time and whether it finished while the loop still ran, and the server's memory."""
    check_loopback(url)
    if not 1 <= generate_users <= 64 or not 0 < seconds <= 3600:
        raise ValueError("generate users must be 1..64 and loop seconds 0..3600")
    from gradio_client import Client

    def factory():
        return Client(url, verbose=False, analytics_enabled=False)

    lock, gen, meas = threading.Lock(), Stats(), Stats()
    before = rss_mb(pid)
    t0 = time.perf_counter()
    stop_at = t0 + seconds
    measured: dict = {}

    def generator(k: int):
        client, n = factory(), 0
        while time.perf_counter() < stop_at:
            n += 1
            _user(lambda: client, gen, lock, lambda c: c.predict(
                "The game was released in", words, 1.0, 1000 * k + n, False, "qint8", api_name="/generate"))

    def measurer():
        _user(factory, meas, lock, lambda c: c.predict(slice_label, 1, ["qint8"], api_name="/measure"))
        measured["at_s"] = time.perf_counter() - t0

    threads = [threading.Thread(target=generator, args=(k,), daemon=True) for k in range(generate_users)]
    threads.append(threading.Thread(target=measurer, daemon=True))
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, seconds + grace_s - (time.perf_counter() - t0)))
    return {"generate": gen.summary(), "measure": meas.summary(), "generates": len(gen.latencies),
            "loop_s": seconds, "measure_done_at_s": measured.get("at_s"),
            "measure_finished_in_loop": measured.get("at_s") is not None and measured["at_s"] <= seconds,
            "unfinished": sum(t.is_alive() for t in threads), "wall_s": time.perf_counter() - t0,
            "rss_mb_before": before, "rss_mb_after": rss_mb(pid)}


def _wait_during_full_split(factory, words: int) -> float:
    """Start a full-split measurement, then time one Generate sent while it runs."""
    client = factory()
    job = client.submit(FULL_SLICE, 1, ["qint8"], api_name="/measure")
    time.sleep(3.0)
    t0 = time.perf_counter()
    factory().predict("The game was released in", words, 1.0, 0, False, "qint8", api_name="/generate")
    wait = time.perf_counter() - t0
    if job.done():
        wait = float("nan")             # the measurement was over before the Generate: nothing measured
    job.cancel()
    return wait


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_demo(extra_env: dict | None = None, timeout_s: float = 120.0):
    """Start ``python demo.py`` on a free loopback port; returns (process, url, seconds to ready)."""
    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
           "GRADIO_ANALYTICS_ENABLED": "False", **(extra_env or {})}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(ROOT / "demo.py")], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/"
    while time.perf_counter() - t0 < timeout_s:
        if proc.poll() is not None:
            raise RuntimeError(f"demo.py exited with {proc.returncode}: {proc.stderr.read()[-500:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, url, time.perf_counter() - t0
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"demo.py did not listen on port {port} within {timeout_s:.0f} s")


def main_load(args) -> dict:
    """The ``python -m wlm load`` command: launch (or use) the app, run the load, report."""
    proc = None
    if args.url:
        url, pid = args.url, args.pid
    else:
        cache = tempfile.mkdtemp(prefix="wlm-load-cache-")      # no stored results: measure live
        proc, url, ready = launch_demo({"WLM_CACHE": cache})
        pid = proc.pid
        print(f"launched demo.py (pid {pid}) at {url}, listening after {ready:.1f} s", file=sys.stderr)
    try:
        if args.loop_seconds:
            return run_loop(url, generate_users=args.generate_users, seconds=args.loop_seconds, words=args.words,
                            slice_label=args.slice, pid=pid)
        return run_load(url, generate_users=args.generate_users, measure_users=args.measure_users,
                        words=args.words, slice_label=args.slice, deadline_s=args.deadline, pid=pid,
                        full_split_wait=args.full_split_wait)
    finally:
        if proc:
            proc.terminate()
            proc.wait(10)
