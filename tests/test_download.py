"""The download code against a local HTTP server serving the shared WikiText-2 files."""
import socket
import subprocess
import sys
import time

import pytest

from wlm.download import SHA256, DownloadError, download, sha256_file

pytestmark = pytest.mark.wikitext


def test_download_verifies_and_reports_progress(server, tmp_path):
    seen = {}
    paths = download(tmp_path, mirror=f"{server}/good",
                     progress_factory=lambda name: (lambda d, t: seen.__setitem__(name, (d, t))))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test.txt", "train.txt", "valid.txt"]
    for name, path in paths.items():
        assert sha256_file(path) == SHA256[name]
        assert seen[name][0] == seen[name][1] == path.stat().st_size


def test_checksum_mismatch_names_the_file_and_leaves_nothing(server, tmp_path):
    with pytest.raises(DownloadError, match=r"train\.txt: sha256 mismatch"):
        download(tmp_path, mirror=f"{server}/corrupt")
    assert list(tmp_path.iterdir()) == []


def test_dropped_connection_leaves_no_partial_file(server, tmp_path):
    with pytest.raises(DownloadError):
        download(tmp_path, mirror=f"{server}/drop")
    assert list(tmp_path.iterdir()) == []


def test_good_files_are_kept_and_a_bad_one_is_not_overwritten(server, tmp_path):
    download(tmp_path, mirror=f"{server}/good")
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    download(tmp_path, mirror=f"{server}/corrupt")          # all present and valid: nothing fetched
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before


def test_no_network_fails_fast_with_manual_instructions(tmp_path, monkeypatch):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()                                                # nothing listens there
    monkeypatch.setenv("WLM_DATA_MIRROR", f"http://127.0.0.1:{port}")
    t0 = time.monotonic()
    with pytest.raises(DownloadError, match="place the files by hand"):
        download(tmp_path)
    assert time.monotonic() - t0 < 10
    assert list(tmp_path.iterdir()) == []


def test_cli_download(server, tmp_path):
    dest = tmp_path / "wt2"
    r = subprocess.run([sys.executable, "-m", "wlm", "download", "--dest", str(dest), "--mirror", f"{server}/good"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "sha256 verified" in r.stdout
    r = subprocess.run([sys.executable, "-m", "wlm", "download", "--dest", str(tmp_path / "x"), "--mirror",
                        f"{server}/corrupt"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith("error: train.txt: sha256 mismatch")
    assert "Traceback" not in r.stderr


def test_the_file_as_written_is_verified_not_the_stream(server, tmp_path):
    """Another writer (or the disk) changes the temporary file while it is written: the bytes
    received still hash right, the file does not, and it is not installed."""
    def tamper(done, total):
        for p in tmp_path.glob(".test.txt*part"):
            with open(p, "r+b") as f:
                f.write(b"#")
    with pytest.raises(DownloadError, match=r"test\.txt: sha256 mismatch"):
        download(tmp_path, mirror=f"{server}/good", files=("test.txt",), progress_factory=lambda name: tamper)
    assert list(tmp_path.iterdir()) == []


def test_a_temporary_file_of_a_fixed_name_is_never_written_through(server, tmp_path):
    """A `.test.txt.part` put there by someone else (here a link to a file outside) is left alone:
    each download writes a private file with a name of its own."""
    dest, outside = tmp_path / "wt2", tmp_path / "outside.txt"
    dest.mkdir()
    outside.write_text("not yours")
    (dest / ".test.txt.part").symlink_to(outside)
    download(dest, mirror=f"{server}/good", files=("test.txt",))
    assert outside.read_text() == "not yours"
    assert not (dest / "test.txt").is_symlink() and sha256_file(dest / "test.txt") == SHA256["test.txt"]
    assert (dest / ".test.txt.part").is_symlink()


def test_two_downloads_at_once_both_end_with_a_whole_file(server, tmp_path):
    import threading
    errors = []

    def fetch():
        try:
            download(tmp_path, mirror=f"{server}/good", files=("train.txt",), force=True)
        except Exception as e:      # noqa: BLE001 (reported below)
            errors.append(e)
    threads = [threading.Thread(target=fetch) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and sha256_file(tmp_path / "train.txt") == SHA256["train.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["train.txt"]
