"""The server's private folder: removed on close, and reclaimed only from servers that no longer run."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ppjax.app.workspace import Workspace, reclaim_stale

pytest.importorskip("fcntl")


def test_a_folder_is_reclaimed_only_when_no_process_holds_its_lock(tmp_path):
    live = Workspace(tmp_path)
    holder = subprocess.Popen(  # another running server: it holds its own folder's lock
        [sys.executable, "-c", "import sys, time, pathlib; from ppjax.app.workspace import Workspace; w = Workspace(pathlib.Path(sys.argv[1])); print(w.root, flush=True); time.sleep(60)", str(tmp_path)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        other = Path(holder.stdout.readline().strip())
        dead = Workspace(tmp_path)
        batch = tmp_path / "batch"
        batch.mkdir()
        (batch / "kept.jpg").write_bytes(b"whole")
        (batch / ".next.jpg.ppjax-staged.jpg").write_bytes(b"half")
        dead.note_batch(batch)
        (dead.uploads / "IMG_0001.jpg").write_bytes(b"an original, GPS and all")
        os.close(dead._lock_fd)  # as if its process had died: the lock goes with it
        dead._lock_fd = None
        (tmp_path / "ppjax-app-older").mkdir()  # an older ppjax's folder, without a lock: left alone
        removed = reclaim_stale(tmp_path)
        assert removed == [dead.root] and not dead.root.exists()
        assert live.root.exists() and other.exists() and (tmp_path / "ppjax-app-older").exists()
        assert sorted(p.name for p in batch.iterdir()) == ["kept.jpg"]  # its half-written photo gone, the whole one kept
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    assert reclaim_stale(tmp_path) == [other]  # once its process is gone
    live.close()
    assert not live.root.exists()
