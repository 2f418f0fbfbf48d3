"""The CPU scheduler (wlm.turns): ordering and exclusion, decided by its rules, not by timing.

The tests wait on the scheduler's own state (``wait_until``), never sleep, and bound every
wait, so a broken scheduler fails them instead of hanging them."""
import threading

import pytest

from wlm.turns import CpuTurns

WAIT = 30          # seconds: only a broken scheduler ever reaches it


def start(fn, *args):
    t = threading.Thread(target=fn, args=args, daemon=True)
    t.start()
    return t


def finish(*threads):
    for t in threads:
        t.join(WAIT)
        assert not t.is_alive(), "a thread is still waiting for its turn"


def test_a_waiting_generate_runs_right_after_the_current_chunk():
    """Each round: a Generate asks while a chunk runs; the measurement asks for its next chunk at
    once; the Generate must come next, every round."""
    turns, order = CpuTurns(), []
    for rnd in range(20):
        in_chunk, gen = threading.Event(), None

        def measurement():
            for k in range(2):
                with turns.chunk():
                    order.append((rnd, f"chunk {k}"))
                    if k == 0:
                        in_chunk.set()
                        assert turns.wait_until(lambda s: s.waiting["generate"] == 1, WAIT)

        def generate():
            with turns.generate():
                order.append((rnd, "generate"))

        m = start(measurement)
        assert in_chunk.wait(WAIT)
        gen = start(generate)
        finish(m, gen)
    assert order == [(r, e) for r in range(20) for e in ("chunk 0", "generate", "chunk 1")]


def test_chunks_and_generates_never_overlap():
    """A Generate holds its turn until a chunk has asked for one (or, with a broken scheduler,
    got one); the chunk must not start before the Generate's turn ends. Then the reverse."""
    for first, second in (("generate", "chunk"), ("chunk", "generate")):
        turns, inside, overlaps = CpuTurns(), [], []

        def holder():
            with turns.turn(first):
                inside.append(first)
                assert turns.wait_until(lambda s: s.waiting[second] or s.running[second], WAIT)
                overlaps.append(second in inside)
                inside.remove(first)

        def other():
            assert turns.wait_until(lambda s: s.running[first], WAIT)
            with turns.turn(second):
                overlaps.append(first in inside)

        finish(start(holder), start(other))
        assert overlaps == [False, False], (first, second)


def test_generates_take_turns_first_come_first_served():
    turns, order, gate = CpuTurns(), [], threading.Event()

    def gen(name):
        with turns.generate():
            order.append(name)
            if name == "a":
                assert gate.wait(WAIT)

    a = start(gen, "a")
    assert turns.wait_until(lambda s: s.running["generate"] == 1, WAIT)
    others = []
    for k, name in enumerate("bcd"):
        others.append(start(gen, name))
        assert turns.wait_until(lambda s, n=k + 1: s.waiting["generate"] == n, WAIT)
    gate.set()
    finish(a, *others)
    assert order == ["a", "b", "c", "d"]


def test_a_measurement_under_a_continuous_generate_stream_finishes():
    """Two Generates ask again the moment their turn ends, so one is always waiting. The
    measurement still gets its share: with turns of 50 ms, chunks of 20 ms and share 0.2 (a
    fake clock), one chunk after every two generate turns (4 x 20 ms <= 2 x 50 ms).

    The OS's thread scheduling decides nothing: a stream's turn ends only once the other stream
    and the measurement are both waiting, so every decision is the scheduler's."""
    clock = [0.0]
    turns, order = CpuTurns(measure_share=0.2, clock=lambda: clock[0]), []
    measuring, stop = threading.Event(), threading.Event()

    def both_waiting(s):
        return s.waiting["generate"] >= 1 and s.waiting["chunk"] >= 1

    def stream(name):
        while not stop.is_set() and len(order) < 5000:
            with turns.generate():
                clock[0] += 0.05
                order.append(name)
                while not stop.is_set() and not (measuring.is_set() and turns.wait_until(both_waiting, 0.01)):
                    pass

    def measurement():
        assert turns.wait_until(lambda s: s.running["generate"] == 1 and s.waiting["generate"] == 1, WAIT)
        order.append("asks")
        measuring.set()
        for _ in range(30):
            with turns.chunk():
                clock[0] += 0.02
                order.append("chunk")
        stop.set()

    g1, g2, m = start(stream, "g1"), start(stream, "g2"), start(measurement)
    finish(m, g1, g2)
    assert order.count("chunk") == 30 and stop.is_set()           # finished while the stream ran
    first = order.index("chunk") - order.index("asks") - 1
    gaps = [b - a - 1 for a, b in zip(*[[k for k, e in enumerate(order) if e == "chunk"][i:] for i in (0, 1)])]
    assert first == 0 and gaps == [2] * 29, (first, gaps)         # its share, exactly, every time
    assert order.count("g1") + order.count("g2") < 5000           # the stream did not run out first


def test_a_build_runs_beside_a_generate_but_never_beside_a_chunk():
    turns = CpuTurns()
    building, done = threading.Event(), threading.Event()
    seen = {}

    def build():
        with turns.build():
            building.set()
            assert done.wait(WAIT)

    b = start(build)
    assert building.wait(WAIT)
    with turns.generate() as g:                                   # does not wait for the build
        seen["generate ran during the build"] = turns.snapshot().running["build"] == 1
    seen["marked disturbed"] = g.disturbed

    def chunk():
        with turns.chunk():
            seen["chunk ran during the build"] = turns.snapshot().running["build"] == 1

    c = start(chunk)
    assert turns.wait_until(lambda s: s.waiting["chunk"] == 1, WAIT)
    done.set()
    finish(b, c)
    assert seen == {"generate ran during the build": True, "marked disturbed": True,
                    "chunk ran during the build": False}
    with turns.generate() as quiet:
        pass
    assert not quiet.disturbed


def test_bad_arguments():
    with pytest.raises(ValueError, match="kind"):
        with CpuTurns().turn("train"):
            pass
    with pytest.raises(ValueError, match="measure_share"):
        CpuTurns(measure_share=1.5)


def test_generates_run_side_by_side_up_to_their_slots_and_never_beside_a_chunk():
    """Two slots: two Generates hold turns at once, a third waits; a chunk asked meanwhile
    starts only when both have ended, and no Generate starts while it runs."""
    turns, gates, log = CpuTurns(generate_slots=2), [threading.Event() for _ in range(3)], []

    def gen(k):
        with turns.generate():
            log.append(("start", k, turns.snapshot().running["chunk"]))
            assert gates[k].wait(WAIT)
        log.append(("end", k))

    def chunk():
        with turns.chunk():
            log.append(("chunk", turns.snapshot().running["generate"]))

    a, b = start(gen, 0), start(gen, 1)
    assert turns.wait_until(lambda s: s.running["generate"] == 2, WAIT)
    c = start(chunk)
    assert turns.wait_until(lambda s: s.waiting["chunk"] == 1, WAIT)
    d = start(gen, 2)
    assert turns.wait_until(lambda s: s.waiting["generate"] == 1, WAIT)
    assert turns.snapshot().running["generate"] == 2            # the third waits: no slot
    gates[0].set()
    gates[2].set()
    gates[1].set()
    finish(a, b, c, d)
    starts = [e for e in log if e[0] == "start"]
    assert all(e[2] == 0 for e in starts) and ("chunk", 0) in log
    assert log.index(("chunk", 0)) > max(log.index(("end", 0)), log.index(("end", 1)))
