"""Where the app keeps what it makes: ONNX exports, stored measurements, the fetched test split.

On a Hugging Face Space everything under the app folder is lost at every restart; a Space
with persistent storage (or a storage bucket mounted as a volume) has it at ``/data``. So the
first of these that is writable:

1. ``/data/wlm`` when ``/data`` exists (persistent storage, a bucket mount);
2. the app's own ``data`` folder (a clone on someone's machine);
3. a private folder in the system's temporary directory (a read-only app folder):
   ``wlm-<uid>``, made 0700 and used only if this user owns it and no one else may write
   in it; otherwise a fresh ``mkdtemp`` folder.

``WLM_DATA`` and ``WLM_CACHE`` still override the test split's and the cache's place.

Files are written whole (``atomic_write``): to a temporary file beside the target, then
renamed. Where rename does not work (a bucket mount may refuse it, or copy under it), the
temporary file is copied onto the target and read back to verify, while a marker beside it
says the target is being written: ``complete(path)`` is False until the copy is verified,
and stays False after a crash in between.
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

PERSISTENT = Path("/data")            # where Hugging Face Spaces mount persistent storage
SHIPPED_RESULTS = Path(__file__).resolve().parent.parent / "data" / "results"    # measured with bench --save-to
WRITING = ".writing-"                 # marker name part: ``.<name>.writing-<pid>-<random>``


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


def temp_prefix(path: str | os.PathLike) -> str:
    """The name start of ``atomic_write``'s temporary files for ``path``: ``.<name>.<pid>.``,
    so that a cleanup can tell whose they are (``stale_parts``)."""
    return f".{Path(path).name}.{os.getpid()}."


def sha256_file(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_safetensors(path: str | os.PathLike, tensors: bool = True) -> tuple[dict, dict[str, str]]:
    """(tensors, metadata) of a ``.safetensors`` file (data, never a pickle; ``tensors=False``: its
    header only, no tensor read); ValueError saying why for a file that cannot be read."""
    from safetensors import SafetensorError, safe_open
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            return ({k: f.get_tensor(k) for k in f.keys()} if tensors else {}), meta
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ValueError(f"{path} is not a readable .safetensors file (truncated or corrupted?): {e}") from None


def _markers(path: Path) -> list[str]:
    return glob.glob(os.path.join(glob.escape(str(path.parent)), f".{glob.escape(path.name)}{WRITING}*"))


def _clear_markers(path: Path) -> None:
    """Remove the markers of writes of ``path`` whose writer is gone (a crash): the file was just
    written whole. A live writer's marker stays (its copy is still under way)."""
    for m in _markers(path):
        try:
            pid = int(Path(m).name[len(f".{path.name}{WRITING}"):].split("-")[0])
        except ValueError:
            pid = None
        if pid is None or (pid != os.getpid() and not _pid_alive(pid)):
            try:
                os.unlink(m)
            except OSError:
                pass


def complete(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a whole file: it exists and no write of it by copy is in progress
    or was cut short (see ``atomic_write``)."""
    path = Path(path)
    return path.is_file() and not _markers(path)


def _copy_into_place(tmp: str, path: Path) -> None:
    """Put ``tmp``'s bytes at ``path`` without a rename: marker first, copy, read back, then the
    marker goes. While the copy runs, and after a crash in it, ``complete(path)`` is False; a copy
    that fails is removed (or, if it cannot be, stays marked)."""
    fd, marker = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}{WRITING}{os.getpid()}-")
    os.close(fd)
    expected = sha256_file(tmp)
    try:
        with open(tmp, "rb") as src, open(path, "wb") as dst:
            while block := src.read(1 << 20):
                dst.write(block)
            dst.flush()
            os.fsync(dst.fileno())
        got = sha256_file(path)
        if got != expected:          # e.g. another writer of the same file at once
            raise OSError(f"{path}: the copy read back differs from what was written (sha256 {got}, "
                          f"expected {expected})")
    except BaseException:
        try:
            path.unlink(missing_ok=True)
            os.unlink(marker)
        except OSError:
            pass                     # the marker stays: the damaged file never counts
        raise
    os.unlink(marker)
    _clear_markers(path)


def atomic_write(path: str | os.PathLike, write: Callable[[str], object]) -> Path:
    """Call ``write(tmp_path)`` on a private temporary file beside ``path``, then rename it to
    ``path``: readers see the old file or the whole new one, never a part.

    Where the rename fails (``OSError``: e.g. EXDEV, EPERM or ENOTSUP on a bucket mount), the
    file is copied onto ``path`` and verified by reading it back; meanwhile, and for good if
    that fails, ``complete(path)`` is False and a JSON reader finds no whole document."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path), suffix=".part")
    os.close(fd)
    try:
        write(tmp)
        try:
            os.replace(tmp, path)
        except OSError:
            _copy_into_place(tmp, path)
        else:
            _clear_markers(path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_json(path: str | os.PathLike, obj) -> Path:
    """``obj`` as indented JSON at ``path``, atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=1)))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_parts(folder: str | os.PathLike, max_age_s: float = 3600.0, pids: set[int] | None = None) -> list[Path]:
    """``atomic_write``'s temporary files in ``folder`` (recursively) whose writer is gone: its pid
    (in the name) is in ``pids``, or, with ``pids`` None, no live process here has it or the file
    is older than ``max_age_s`` (a folder shared between machines, a reused pid)."""
    out = []
    now = time.time()
    for p in Path(folder).rglob(".*.part"):
        try:                                   # ".<name>.<pid>.<random>.part" (temp_prefix)
            pid = int(p.name[: -len(".part")].split(".")[-2])
        except (ValueError, IndexError):
            pid = None
        if pids is not None:
            if pid in pids:
                out.append(p)
            continue
        try:
            old = now - p.stat().st_mtime > max_age_s
        except OSError:
            continue
        if old or (pid is not None and pid != os.getpid() and not _pid_alive(pid)):
            out.append(p)
    return out


def remove_stale_parts(folder: str | os.PathLike, **kw) -> list[Path]:
    """Remove ``stale_parts(folder, **kw)``; returns what was removed."""
    removed = []
    for p in stale_parts(folder, **kw):
        try:
            p.unlink()
            removed.append(p)
        except OSError:
            pass
    return removed


def private_dir(parent: str | os.PathLike, name: str) -> Path:
    """``parent/name`` as a folder only this user may write in: made 0700 if missing, kept if this
    user owns it and neither group nor others may write in it (made 0700 then), else (owned by
    someone else, writable by others, a symlink, a file) a fresh ``mkdtemp`` folder in ``parent``."""
    parent = Path(parent)
    folder = parent / name
    uid = os.getuid()
    try:
        parent.mkdir(parents=True, exist_ok=True)
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            pass
        st = os.lstat(folder)
        if (stat.S_ISDIR(st.st_mode) and st.st_uid == uid
                and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)):
            if stat.S_IMODE(st.st_mode) != 0o700:
                os.chmod(folder, 0o700)
            return folder
    except OSError:
        pass
    return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=parent))


def storage_root(app_dir: str | os.PathLike, persistent: str | os.PathLike = PERSISTENT,
                 temp: str | os.PathLike | None = None) -> Path:
    """The folder the app writes under (see the module's docstring for the order)."""
    persistent = Path(persistent)
    candidates = [persistent / "wlm"] if persistent.is_dir() else []
    candidates += [Path(app_dir) / "data"]
    for folder in candidates:
        if writable(folder):
            return folder
    temp = Path(temp or tempfile.gettempdir())
    try:
        folder = private_dir(temp, f"wlm-{os.getuid()}")
    except OSError:
        folder = None
    if folder is not None and writable(folder):
        return folder
    tried = [*candidates, temp / f"wlm-{os.getuid()}"]
    raise OSError(f"no writable folder for the app's files among {', '.join(map(str, tried))}")


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
