"""Where the app writes (wlm.storage): persistent storage first, then the app folder, then a
temporary folder; WLM_DATA / WLM_CACHE still win."""
import json
import os

import pytest

from wlm.storage import app_paths, atomic_write, storage_root, writable, write_json


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
