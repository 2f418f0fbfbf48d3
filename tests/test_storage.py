"""Where the app writes (wlm.storage): persistent storage first, then the app folder, then a
temporary folder; WLM_DATA / WLM_CACHE still win."""
import errno
import json
import os
import stat

import pytest

from wlm.storage import (app_paths, atomic_write, complete, private_dir, stale_parts, storage_root, writable,
                         write_json)


def test_persistent_storage_first_when_it_exists(tmp_path):
    persistent, app = tmp_path / "data", tmp_path / "app"
    persistent.mkdir()
    assert storage_root(app, persistent, tmp_path / "tmp") == persistent / "wlm"
    assert (persistent / "wlm").is_dir() and not (app / "data").exists()


def test_the_app_folder_when_there_is_no_persistent_storage(tmp_path):
    app = tmp_path / "app"
    assert storage_root(app, tmp_path / "no-such-mount", tmp_path / "tmp") == app / "data"
    assert not (tmp_path / "no-such-mount").exists()              # /data itself is never made


def test_a_temporary_folder_when_nothing_else_is_writable(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")                            # nothing can be made under a file
    persistent = tmp_path / "mount"
    (persistent).mkdir()
    (persistent / "wlm").write_text("in the way")                 # /data is there but /data/wlm is a file
    root = storage_root(blocker / "app", persistent, tmp_path / "tmp")
    assert root == tmp_path / "tmp" / f"wlm-{os.getuid()}" and writable(root)


def test_app_paths_defaults_and_overrides(tmp_path, monkeypatch):
    monkeypatch.delenv("WLM_DATA", raising=False)
    monkeypatch.delenv("WLM_CACHE", raising=False)
    paths = app_paths(tmp_path / "app", tmp_path / "no-mount")
    assert paths.data == tmp_path / "app" / "data" / "wikitext-2" and paths.cache == tmp_path / "app" / "data" / "cache"
    assert paths.shipped == tmp_path / "app" / "data" / "results"
    monkeypatch.setenv("WLM_DATA", str(tmp_path / "wt2"))
    monkeypatch.setenv("WLM_CACHE", str(tmp_path / "c"))
    paths = app_paths(tmp_path / "app", tmp_path / "no-mount")
    assert paths.data == tmp_path / "wt2" and paths.cache == tmp_path / "c"


def test_a_failed_write_leaves_the_old_file_whole(tmp_path):
    path = tmp_path / "sub" / "r.json"
    write_json(path, {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1}

    def half_then_fail(tmp):
        open(tmp, "w").write('{"a": ')
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, half_then_fail)
    assert json.loads(path.read_text()) == {"a": 1}
    assert sorted(p.name for p in path.parent.iterdir()) == ["r.json"]      # no part file left behind


# ---------------------------------------------------------------- a private temporary folder
def _nothing_else_writable(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    return blocker / "app", tmp_path / "no-mount", tmp_path / "tmp"


def test_the_temporary_folder_is_made_private(tmp_path):
    app, mount, temp = _nothing_else_writable(tmp_path)
    root = storage_root(app, mount, temp)
    st = os.lstat(root)
    assert st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) == 0o700


@pytest.mark.parametrize("planted", ["world-writable", "group-writable", "symlink", "someone else's"])
def test_a_shared_or_foreign_temporary_folder_is_not_used(tmp_path, monkeypatch, planted):
    app, mount, temp = _nothing_else_writable(tmp_path)
    uid = os.getuid()
    if planted == "someone else's":
        uid += 4242
        monkeypatch.setattr(os, "getuid", lambda: uid)    # the folder below belongs to the real uid
    predictable = temp / f"wlm-{uid}"
    elsewhere = tmp_path / "attacker"
    elsewhere.mkdir()
    temp.mkdir()
    if planted == "symlink":
        predictable.symlink_to(elsewhere)
    else:
        predictable.mkdir()
        os.chmod(predictable, {"world-writable": 0o777, "group-writable": 0o770}.get(planted, 0o700))
    root = storage_root(app, mount, temp)
    assert root != predictable and root.parent == temp and writable(root)
    assert stat.S_IMODE(os.lstat(root).st_mode) == 0o700
    assert list(elsewhere.iterdir()) == [] and (not predictable.is_dir() or predictable.is_symlink()
                                                or list(predictable.iterdir()) == [])


def test_a_private_folder_of_ours_is_kept_and_made_0700(tmp_path):
    (tmp_path / "wlm-x").mkdir(mode=0o755)
    assert private_dir(tmp_path, "wlm-x") == tmp_path / "wlm-x"
    assert stat.S_IMODE(os.lstat(tmp_path / "wlm-x").st_mode) == 0o700


# ---------------------------------------------------------------- where rename does not work
@pytest.fixture(params=[errno.EXDEV, errno.EPERM, errno.ENOTSUP])
def no_rename(monkeypatch, request):
    """os.replace fails, as it may on a bucket mount."""
    def refuse(src, dst, *a, **kw):
        raise OSError(request.param, os.strerror(request.param), str(src), None, str(dst))
    monkeypatch.setattr(os, "replace", refuse)
    return request.param


def test_without_rename_files_are_still_written_whole(tmp_path, no_rename):
    path = write_json(tmp_path / "r.json", {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1} and complete(path)
    write_json(path, {"a": 2, "b": list(range(1000))})                    # over an existing file
    assert json.loads(path.read_text()) == {"a": 2, "b": list(range(1000))} and complete(path)
    atomic_write(tmp_path / "blob.bin", lambda tmp: open(tmp, "wb").write(bytes(range(256)) * 4000))
    assert (tmp_path / "blob.bin").read_bytes() == bytes(range(256)) * 4000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blob.bin", "r.json"]     # no temporary or marker file


def test_without_rename_results_are_stored_and_found(tmp_path, no_rename):
    from wlm.results import ResultStore
    store = ResultStore(tmp_path)
    store.save({"format": "wlm-measurement/2", "when": "2026-01-01T00:00:00+00:00", "slice": "s", "threads": 1,
                "variants": ["fp32"], "rows": []})
    assert store.find(slice="s")["threads"] == 1


def test_a_copy_cut_short_never_counts_as_whole(tmp_path, monkeypatch, no_rename):
    from wlm import storage
    from wlm.results import ResultStore
    store = ResultStore(tmp_path)
    record = {"format": "wlm-measurement/2", "when": "2026-01-01T00:00:00+00:00", "slice": "s", "threads": 1,
              "variants": ["fp32"], "rows": []}
    path = store.save(record)
    real_fsync = os.fsync
    assert complete(path) and not list(tmp_path.glob(".*writing*"))

    def crash_after_half(fd):                          # the process dies mid-copy: half the bytes are there
        os.ftruncate(fd, os.fstat(fd).st_size // 2)
        raise KeyboardInterrupt
    monkeypatch.setattr(storage.os, "fsync", crash_after_half)
    monkeypatch.setattr(storage.Path, "unlink", lambda *a, **kw: (_ for _ in ()).throw(OSError("no")))
    with pytest.raises(KeyboardInterrupt):
        store.save({**record, "rows": [{"x": "y" * 1000}]})
    monkeypatch.setattr(storage.os, "fsync", real_fsync)
    monkeypatch.undo()
    assert not complete(path)                          # the marker stayed
    import subprocess
    import sys
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    for m in tmp_path.glob(f".{path.name}.writing-*"):  # as if that process had died there
        m.rename(m.with_name(m.name.replace(f"writing-{os.getpid()}-", f"writing-{int(dead.stdout)}-")))
    assert store.find(slice="s") is None               # and the half file is no record
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError(errno.EXDEV, "cross-device")))
    store.save(record)                                 # a later whole write makes it count again
    assert complete(path) and store.find(slice="s")["threads"] == 1


def test_stale_part_files_are_told_from_live_ones(tmp_path):
    import subprocess
    import sys
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)
    (tmp_path / "sub").mkdir()
    gone = tmp_path / "sub" / f".r.json.{dead}.abc.part"
    mine = tmp_path / f".r.json.{os.getpid()}.abc.part"
    old = tmp_path / ".r.json.abc.part"                 # no pid in its name (an earlier version's)
    for p in (gone, mine, old):
        p.write_text("x")
    os.utime(old, (0, 0))
    assert sorted(stale_parts(tmp_path)) == sorted([gone, old])
    assert stale_parts(tmp_path, pids={os.getpid()}) == [mine]


# ---------------------------------------------------------------- what a Space installs and pushes
ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent
DISTRIBUTIONS = {"torch": "torch", "safetensors": "safetensors", "gradio": "gradio", "gradio_client": "gradio_client",
                 "tqdm": "tqdm", "numpy": "numpy", "pandas": "pandas", "onnxruntime": "onnxruntime", "onnx": "onnx"}


def test_every_package_the_app_imports_is_pinned_to_what_is_installed():
    """A Space resolves requirements.txt again at every rebuild: a floating pin changes what it runs."""
    import re
    import sys
    from importlib.metadata import version
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, op, v = re.match(r"([A-Za-z0-9_.-]+)\s*([=<>!~]+)\s*(\S+)", line).groups()
            assert op == "==", f"{name} must be pinned with ==, got {line!r}"
            pins[name.lower().replace("-", "_")] = v
    import ast
    imported = set()
    for f in [*ROOT.joinpath("wlm").glob("*.py"), ROOT / "demo.py"]:
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported.add(node.module.split(".")[0])
    third_party = {m for m in imported if m not in sys.stdlib_module_names and m not in ("wlm", "__future__")}
    assert third_party <= set(DISTRIBUTIONS), third_party - set(DISTRIBUTIONS)
    for module in third_party:
        dist = DISTRIBUTIONS[module]
        assert dist in pins, f"{dist} (imported as {module}) is not in requirements.txt"
        assert version(dist).split("+")[0] == pins[dist], (dist, version(dist), pins[dist])


def test_large_binaries_go_through_lfs():
    lines = (ROOT / ".gitattributes").read_text().splitlines()
    for pattern in ("data/*.safetensors", "*.onnx"):
        assert f"{pattern} filter=lfs diff=lfs merge=lfs -text" in lines, pattern
