"""Where the app keeps what it makes: ONNX exports, stored measurements, the fetched test split.

On a Hugging Face Space everything under the app folder is lost at every restart; a Space
with persistent storage has it mounted at ``/data``. So the first of these that is writable:

1. ``/data/wlm`` when ``/data`` exists (persistent storage);
2. the app's own ``data`` folder (a clone on someone's machine);
3. a folder in the system's temporary directory (a read-only app folder).

``WLM_DATA`` and ``WLM_CACHE`` still override the test split's and the cache's place.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

PERSISTENT = Path("/data")            # where Hugging Face Spaces mount persistent storage
SHIPPED_RESULTS = Path(__file__).resolve().parent.parent / "data" / "results"    # measured with bench --save-to


def writable(folder: Path) -> bool:
    """Whether ``folder`` exists or can be made, and a file can be written in it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".wlm-probe-")
        os.close(fd)
        os.unlink(probe)
        return True
    except OSError:
        return False


def atomic_write(path: str | os.PathLike, write) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it to ``path``:
    readers see the old file or the whole new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_json(path: str | os.PathLike, obj) -> Path:
    """``obj`` as indented JSON at ``path``, atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=1)))


def storage_root(app_dir: str | os.PathLike, persistent: str | os.PathLike = PERSISTENT,
                 temp: str | os.PathLike | None = None) -> Path:
    """The folder the app writes under (see the module's docstring for the order)."""
    persistent = Path(persistent)
    candidates = [persistent / "wlm"] if persistent.is_dir() else []
    candidates += [Path(app_dir) / "data", Path(temp or tempfile.gettempdir()) / f"wlm-{os.getuid()}"]
    for folder in candidates:
        if writable(folder):
            return folder
    raise OSError(f"no writable folder for the app's files among {', '.join(map(str, candidates))}")


@dataclass(frozen=True)
class AppPaths:
    root: Path         # what storage_root chose
    data: Path         # WikiText-2 (the test split is fetched here on demand)
    cache: Path        # ONNX exports and stored measurements
    shipped: Path      # results shipped with the app (read only)


def app_paths(app_dir: str | os.PathLike, persistent: str | os.PathLike = PERSISTENT) -> AppPaths:
    """The app's folders: ``$WLM_DATA`` / ``$WLM_CACHE`` when set, else under ``storage_root``."""
    root = storage_root(app_dir, persistent)
    data = Path(os.environ.get("WLM_DATA") or root / "wikitext-2")
    cache = Path(os.environ.get("WLM_CACHE") or root / "cache")
    return AppPaths(root, data, cache, Path(app_dir) / "data" / "results")
