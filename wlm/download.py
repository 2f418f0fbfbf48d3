"""Download WikiText-2 from its canonical public copy, verifying sha256, writing atomically.

Each download goes to a private temporary file of its own in the destination folder
(``tempfile.mkstemp``: mode 0600, a name no other process uses), the file as written is read
back and hashed, and only a file whose sha256 matches is renamed into place
(``wlm.storage.atomic_write``). Two processes fetching at once each install a whole file.
"""
from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

from .progress import Progress
from .storage import atomic_write
from .storage import sha256_file as sha256_file    # re-exported: wlm.download.sha256_file is public

BASE_URL = "https://raw.githubusercontent.com/pytorch/examples/main/word_language_model/data/wikitext-2"
SHA256 = {
    "train.txt": "9e9fa1ad55b1c2c95b08e37dd8e653f638fac2c6de904b79e813611eefbc985f",
    "valid.txt": "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8",
    "test.txt": "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0",
}


class DownloadError(Exception):
    """A download that failed; the message says what to do."""


def corpus_sha256(folder) -> dict[str, str]:
    """sha256 of each split file present in ``folder``."""
    folder = Path(folder)
    return {name: sha256_file(folder / name) for name in SHA256 if (folder / name).is_file()}


def _manual_hint(dest: Path) -> str:
    return (f"To place the files by hand, copy train.txt, valid.txt and test.txt of WikiText-2 "
            f"(from {BASE_URL}/) into {dest}, or point --data / WLM_DATA at a folder that holds them.")


def download(dest, *, mirror: str | None = None, timeout: float = 10.0,
             progress_factory=None, force: bool = False, files=tuple(SHA256)) -> dict[str, Path]:
    """Fetch train/valid/test.txt (or just ``files``) into ``dest``; return their paths.

    Files already present with the right sha256 are kept. Each file is written to a private
    temporary file, hashed as written, and renamed only after its checksum matched, so a
    failure leaves no partial file. ``mirror`` (or $WLM_DATA_MIRROR) replaces the base URL.
    ``progress_factory(name)`` returns a ``progress(bytes_done, bytes_total)`` callback.
    """
    dest = Path(dest)
    base = (mirror or os.environ.get("WLM_DATA_MIRROR") or BASE_URL).rstrip("/")
    dest.mkdir(parents=True, exist_ok=True)
    out = {}
    unknown = [f for f in files if f not in SHA256]
    if unknown:
        raise ValueError(f"files must be among {', '.join(SHA256)}, got {unknown}")
    for name in files:
        target = dest / name
        if target.is_file() and not force and sha256_file(target) == SHA256[name]:
            out[name] = target
            continue
        url = f"{base}/{name}"
        progress: Progress = progress_factory(name) if progress_factory else None
        try:
            atomic_write(target, lambda tmp: _fetch(url, name, tmp, timeout, progress))
        except DownloadError:
            raise
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            raise DownloadError(f"could not download {url}: {reason}. {_manual_hint(dest)}") from e
        except Exception as e:  # http.client.IncompleteRead and friends
            raise DownloadError(f"download of {url} failed: {e!r}. {_manual_hint(dest)}") from e
        out[name] = target
    return out


def _fetch(url: str, name: str, tmp: str, timeout: float, progress: Progress | None) -> None:
    """``url`` into the file ``tmp``, then check the sha256 of the file as written (not of the
    bytes received: what counts is what the disk holds)."""
    expected = SHA256[name]
    with urllib.request.urlopen(url, timeout=timeout) as r, open(tmp, "wb") as f:
        total = int(r.headers.get("Content-Length") or 0)
        done = 0
        while block := r.read(1 << 16):
            f.write(block)
            done += len(block)
            if progress:
                progress(done, max(total, done))
        if total and done != total:
            raise DownloadError(f"{name}: connection closed after {done} of {total} bytes")
        f.flush()
        os.fsync(f.fileno())
    got = sha256_file(tmp)
    if got != expected:
        raise DownloadError(f"{name}: sha256 mismatch (got {got}, expected {expected}); "
                            f"the file from {url} is not WikiText-2 as shipped by pytorch/examples")
