"""The app started the way a Hugging Face Space starts it, and the deploy steps of README that
can be checked offline."""
import os
import re
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, SHIPPED_CHECKPOINT

BLOCK_DEV_TOOLS = '''
import sys
class _NoDevTools:
    """A Space installs requirements.txt only: importing a dev tool must fail."""
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"pytest", "_pytest", "playwright", "pytest_timeout", "pluggy"}:
            raise ImportError(name + " is a dev tool; a Space has only requirements.txt")
        return None
sys.meta_path.insert(0, _NoDevTools())
'''


@pytest.mark.server
@pytest.mark.wikitext
@pytest.mark.skipif(not SHIPPED_CHECKPOINT.is_file(), reason="no shipped checkpoint")
def test_space_start_generate_and_measure(tmp_path, server):
    from gradio_client import Client

    from wlm.load import free_port
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(BLOCK_DEV_TOOLS)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WLM_", "PYTEST"))}
    env.update(GRADIO_SERVER_NAME="0.0.0.0", GRADIO_SERVER_PORT=str(port), SPACE_ID="someone/wlm",
               PYTHONPATH=str(tmp_path / "site"), WLM_DATA=str(tmp_path / "no-data"),
               WLM_CACHE=str(tmp_path / "cache"), WLM_DATA_MIRROR=f"{server}/good", GRADIO_ANALYTICS_ENABLED="False")
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "demo.py"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        client, out = None, None
        while time.perf_counter() - t0 < 120 and out is None:
            assert proc.poll() is None, proc.stdout.read()
            try:
                client = client or Client(f"http://127.0.0.1:{port}/", verbose=False, analytics_enabled=False)
                out = client.predict("The game was released in", 20, 1.0, 0, False, "qint8", api_name="/generate")
            except Exception:
                time.sleep(0.25)
        cold = time.perf_counter() - t0
        assert out is not None and "words/s" in out[2] and "Step by step" in out[4]
        (ROOT / "test-output").mkdir(exist_ok=True)
        (ROOT / "test-output" / "space-cold-start.txt").write_text(f"{cold:.2f} s to the first answered /generate\n")
        table, *_, status, machine = client.predict("2,000 tokens", 1, ["qint8"], api_name="/measure")
        assert [r[0] for r in table["data"]] == ["fp32", "qint8"]       # test.txt fetched from the mirror
        assert (tmp_path / "no-data" / "test.txt").is_file()
        capped = client.predict("all (245,569 tokens)", 1, ["qint8"], api_name="/measure")[6]
        assert "live limit of 20,000 tokens" in capped                  # SPACE_ID: the shared-CPU cap
        assert cold < 120
    finally:
        proc.terminate()
        proc.wait(10)


def front_matter() -> dict:
    text = (ROOT / "README.md").read_text()
    block = text.split("---")[1]
    return dict(line.split(": ", 1) for line in block.strip().splitlines())


def test_readme_front_matter_is_a_valid_space_card():
    import gradio
    card = front_matter()
    assert card["sdk"] == "gradio" and card["sdk_version"] == gradio.__version__
    assert (ROOT / card["app_file"]).is_file() and card["python_version"] == '"3.11"'
    assert card["colorFrom"] in {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}
    assert len(card["short_description"]) <= 60


def test_readme_deploy_steps_that_run_offline():
    req = (ROOT / "requirements.txt").read_text()
    pins = dict(re.findall(r"^([\w-]+)==([\w.+]+)", req, re.M))
    assert pins["torch"] == "2.13.0" and "gradio" in pins and "onnxruntime" in pins
    readme = (ROOT / "README.md").read_text()
    sed = re.search(r"sed '1i ([^']+)' requirements.txt", readme)
    assert sed, "README's deploy section adds PyTorch's CPU index with sed"
    patched = subprocess.run(["sed", f"1i {sed.group(1)}", str(ROOT / "requirements.txt")], capture_output=True,
                             text=True, check=True).stdout
    assert patched.splitlines()[0] == "--extra-index-url https://download.pytorch.org/whl/cpu"
    assert patched.splitlines()[1:] == req.splitlines()
    for excluded in ("data/wikitext-2/*", "data/cache/*"):
        assert excluded in readme                            # never uploaded to the Space
