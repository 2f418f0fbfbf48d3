"""The app started the way a Hugging Face Space starts it, and the deploy steps of README that
can be checked offline."""
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

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


def space_copy(dest: Path) -> Path:
    """The files a Space gets: what git tracks or would track (README's upload leaves out what
    .gitignore names: the WikiText-2 folder, the cache, the virtual environment)."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


def start_space(app_dir: Path, site: Path, mirror: str) -> tuple[subprocess.Popen, int]:
    """``python demo.py`` as a Space runs it: SPACE_ID set, every WLM_ path left to its default,
    dev tools unimportable; only the download mirror is ours (no network here)."""
    from wlm.load import free_port
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WLM_", "PYTEST"))}
    env.update(GRADIO_SERVER_NAME="0.0.0.0", GRADIO_SERVER_PORT=str(port), SPACE_ID="someone/wlm",
               PYTHONPATH=str(site), WLM_DATA_MIRROR=mirror, GRADIO_ANALYTICS_ENABLED="False")
    proc = subprocess.Popen([sys.executable, "demo.py"], cwd=app_dir, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    return proc, port


def first_generate(proc, port: int, deadline_s: float = 180.0):
    """Poll until /generate answers; (client, output, seconds since the process started)."""
    from gradio_client import Client
    t0, client, out = time.perf_counter(), None, None
    while time.perf_counter() - t0 < deadline_s and out is None:
        assert proc.poll() is None, proc.stdout.read()
        try:
            client = client or Client(f"http://127.0.0.1:{port}/", verbose=False, analytics_enabled=False)
            out = client.predict("The game was released in", 20, 1.0, 0, False, "qint8", api_name="/generate")
        except Exception:
            time.sleep(0.25)
    return client, out, time.perf_counter() - t0


def stop(proc):
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


def page_load_status(port: int) -> tuple[str, str]:
    """What the Measure and the "Where int8 loses" panels say once a browser has opened the page."""
    from tests.test_browser import ARGS, CHROMIUM
    if not shutil.which(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            # the panels sit in tabs, drawn when their tab is opened
            page.wait_for_selector('#scorecard [data-field="speedup"]', timeout=60_000)
            page.get_by_role("tab", name="Measure").click()
            page.get_by_role("tab", name="Where int8 loses").click()
            page.wait_for_function("() => { const s = document.querySelector('#status'); "
                                   "const i = document.querySelector('#inspect-status'); "
                                   "return s && s.textContent.includes('test tokens') && i && "
                                   "i.textContent.includes('tokens'); }", timeout=60_000)
            text = lambda sel: page.eval_on_selector(sel, "e => e.textContent")     # noqa: E731
            return text("#status") + " " + text("#scorecard"), text("#inspect-status")
        finally:
            browser.close()


@pytest.mark.server
@pytest.mark.wikitext
@pytest.mark.browser
@pytest.mark.timeout(900)
@pytest.mark.skipif(not SHIPPED_CHECKPOINT.is_file(), reason="no shipped checkpoint")
def test_a_fresh_copy_started_as_a_space(tmp_path, server):
    """A fresh copy of the app started as a Space, with the defaults a Space uses: it answers
    within a minute, shows the shipped full-split result on page load (labelled with its machine
    and date), fetches the test split into its storage on first Measure, keeps its files and
    results where a restart finds them, and caps live work at 40,000 model-tokens."""
    from wlm.storage import PERSISTENT, storage_root
    app_dir = space_copy(tmp_path / "space")
    assert not (app_dir / "data" / "wikitext-2").exists() and list((app_dir / "data" / "results").glob("*.json"))
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(BLOCK_DEV_TOOLS)
    root = storage_root(app_dir)                     # /data/wlm on a Space with persistent storage
    assert root == (PERSISTENT / "wlm" if PERSISTENT.is_dir() else app_dir / "data")
    proc, port = start_space(app_dir, tmp_path / "site", f"{server}/good")
    try:
        client, out, cold = first_generate(proc, port)
        assert out is not None, "no answer from /generate within 180 s"
        assert "words/s" in out[2] and "Step by step" in out[4]
        (ROOT / "test-output").mkdir(exist_ok=True)
        (ROOT / "test-output" / "space-cold-start.txt").write_text(f"{cold:.2f} s to the first answered /generate\n")
        assert cold < 60
        status, inspected = page_load_status(port)
        assert "Shipped with the app" in status and "245,568 test tokens" in status
        assert "development machine" in status and "measured 20" in status and "faster" in status   # the scorecard
        assert "Shipped with the app: analysed 20" in inspected and "245,568 test tokens" in inspected
        table = client.predict("2,000 tokens", 1, ["qint8"], api_name="/measure")[1]
        assert [r[0] for r in table["data"]] == ["fp32", "qint8"]       # test.txt fetched from the mirror
        assert (root / "wikitext-2" / "test.txt").is_file() and list((root / "cache" / "results").glob("*.json"))
        full = client.predict("all (245,569 tokens)", 1, ["qint8"], api_name="/measure")[7]
        assert "Shipped with the app" in full                            # over the cap: the shipped result
        capped = client.predict("50,000 tokens", 1, ["qint8"], api_name="/measure")[7]
        assert "over this shared server's live limit of 40,000" in capped
    finally:
        stop(proc)
    proc, port = start_space(app_dir, tmp_path / "site", "http://127.0.0.1:9")     # offline now
    try:
        client, out, _ = first_generate(proc, port)
        assert out is not None
        again = client.predict("2,000 tokens", 1, ["qint8"], api_name="/measure")[7]
        assert "Stored result" in again                                 # survived the restart
    finally:
        stop(proc)


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
