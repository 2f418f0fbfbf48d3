import threading
import time

from wlm.turns import CpuTurns


def test_a_waiting_priority_job_runs_between_two_background_chunks():
    turns, order = CpuTurns(), []
    first = threading.Event()

    def measurement():
        for _ in range(40):
            with turns.background():
                order.append("chunk")
                first.set()
                time.sleep(0.005)

    t = threading.Thread(target=measurement)
    t.start()
    assert first.wait(5)
    with turns.priority():
        order.append("generate")
    t.join()
    k = order.index("generate")
    assert 0 < k < len(order) - 1 and order.count("chunk") == 40      # in between, none lost


def test_priority_jobs_never_overlap():
    turns, inside, overlaps = CpuTurns(), [0], []

    def job():
        with turns.priority():
            inside[0] += 1
            overlaps.append(inside[0] > 1)
            time.sleep(0.002)
            inside[0] -= 1

    threads = [threading.Thread(target=job) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(overlaps) == 8 and not any(overlaps)
