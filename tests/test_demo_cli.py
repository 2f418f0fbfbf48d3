"""python demo.py as a user starts it, when it cannot start."""
import os
import subprocess
import sys

from tests.conftest import ROOT


def run_demo(*args):
    return subprocess.run([sys.executable, "demo.py", *args], capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False"})


def test_missing_checkpoint_is_one_clear_line(tmp_path):
    r = run_demo("--checkpoint", str(tmp_path / "missing.safetensors"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    line, = r.stderr.strip().splitlines()
    assert "checkpoint not found" in line and "--checkpoint" in line


def test_broken_checkpoint_is_one_clear_line(tmp_path):
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    r = run_demo("--checkpoint", str(bad))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "not a readable .safetensors file" in r.stderr.strip().splitlines()[-1]
