"""How long the app takes to start, and how much of that is its own.

    python scripts/startup.py [--runs 3] [--timeout 120]

Each run starts ``python -X importtime demo.py`` as a new visitor's server would start (a fresh,
empty cache and data folder, so nothing built or fetched earlier helps), polls the page until
it answers HTTP 200, and stops the server. In the same interpreter, ``-X importtime`` records
how long importing ``gradio`` and ``torch`` took (cumulative, where each was first imported).
The app's own part is the time to the first 200 minus those two imports: what the project
adds on top of its two big libraries (its own imports, the models, the page, the server).
"""
from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# -X importtime lines: "import time: self [us] | cumulative | imported package"
LINE = re.compile(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def import_seconds(stderr: str, module: str) -> float | None:
    """Cumulative seconds of the top-level import of ``module`` (the least indented line naming it)."""
    best = None
    for m in LINE.finditer(stderr):
        if m.group(4) == module:
            depth = len(m.group(3))
            if best is None or depth < best[0]:
                best = (depth, int(m.group(2)) / 1e6)
    return best[1] if best else None


def one_run(timeout: float) -> dict:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="wlm-startup-") as tmp:
        env = {**os.environ, "WLM_CACHE": str(Path(tmp) / "cache"), "WLM_DATA": str(Path(tmp) / "data"),
               "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_DISABLE_TELEMETRY": "1", "PYTHONUNBUFFERED": "1"}
        err = open(Path(tmp) / "stderr.txt", "w+")
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-X", "importtime", "demo.py", "--port", str(port)], cwd=ROOT,
                                env=env, stdout=subprocess.DEVNULL, stderr=err)
        ready = None
        try:
            while time.perf_counter() - t0 < timeout and proc.poll() is None:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                        if r.status == 200:
                            ready = time.perf_counter() - t0
                            break
                except OSError:
                    time.sleep(0.05)
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        err.seek(0)
        text = err.read()
        err.close()
    if ready is None:
        tail = "\n".join(line for line in text.splitlines() if not line.startswith("import time:"))[-2000:]
        raise SystemExit(f"the app did not answer within {timeout:.0f} s:\n{tail}")
    gradio, torch = import_seconds(text, "gradio"), import_seconds(text, "torch")
    return {"ready_s": ready, "gradio_s": gradio, "torch_s": torch, "own_s": ready - (gradio or 0) - (torch or 0)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--timeout", type=float, default=120.0)
    args = p.parse_args(argv)
    runs = []
    print(f"{'run':>3} {'first 200 (s)':>14} {'import gradio':>14} {'import torch':>13} {'app own (s)':>12}")
    for k in range(args.runs):
        r = one_run(args.timeout)
        runs.append(r)
        print(f"{k + 1:>3} {r['ready_s']:>14.2f} {r['gradio_s']:>14.2f} {r['torch_s']:>13.2f} {r['own_s']:>12.2f}",
              flush=True)
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(f"med {med['ready_s']:>14.2f} {med['gradio_s']:>14.2f} {med['torch_s']:>13.2f} {med['own_s']:>12.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
