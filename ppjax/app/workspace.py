"""The server's private folder for uploads, and what is left of servers that no longer run.

Each ``ppjax app`` keeps the photos people drop on its page (originals, GPS and all) in a folder of
its own under the system's temporary folder, ``ppjax-app-XXXXXXXX`` (mode 0700), removed when the
server stops (SIGTERM, SIGINT, Ctrl+C). A server killed outright (SIGKILL, a power cut) cannot
remove it, so every server, as it starts, removes the folders of servers that no longer run. A
running server holds an exclusive lock (``flock``) on its folder's ``.lock`` file for its whole
life; the lock goes with the process, however it ends, so a folder whose lock can be taken belongs
to no running server. A dead server's batch folders (listed in its ``.batches``) lose the staging
and temporary files of the photos it was writing; its finished photos stay.

``--open`` gives the browser a redirect file in this folder (mode 0600) instead of the page's
address: the token in that address would otherwise stand on the browser's command line, which
every local user can read (``ps``).
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import shutil
import tempfile
import webbrowser
from pathlib import Path

from ppjax.protect.manifest import clean_staging

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: folders of killed servers are not reclaimed
    fcntl = None

__all__ = ["Workspace", "reclaim_stale", "PREFIX"]

PREFIX = "ppjax-app-"
_LOCK = ".lock"
_BATCHES = ".batches"


def _try_lock(path: Path):
    """An open file holding an exclusive lock on ``path``, or None when another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def reclaim_stale(parent: Path | None = None) -> list[Path]:
    """Remove the folders under ``parent`` (default: the temporary folder) of ``ppjax app`` servers
    that no longer run, and the staging files they left in their batch folders; the folders removed."""
    if fcntl is None:
        return []
    parent = Path(parent or tempfile.gettempdir())
    removed = []
    for folder in parent.glob(f"{PREFIX}*"):
        lock = folder / _LOCK
        try:
            if not folder.is_dir() or folder.is_symlink() or folder.stat().st_uid != os.getuid() or not lock.is_file():
                continue  # another user's, or not one of ours (an older ppjax wrote no lock): left alone
            fd = _try_lock(lock)
        except OSError:
            continue
        if fd is None:
            continue  # its server runs
        try:
            for batch in _batches(folder):
                clean_staging(batch)
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
        finally:
            os.close(fd)
    return removed


def _batches(folder: Path) -> list[Path]:
    try:
        return [Path(json.loads(line)) for line in (folder / _BATCHES).read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, ValueError):
        return []


class Workspace:
    """One server's private folder (see the module). ``uploads`` is where jobs keep their photos."""

    def __init__(self, parent: Path | None = None):
        reclaim_stale(parent)
        self.root = Path(tempfile.mkdtemp(prefix=PREFIX, dir=parent))
        self._lock_fd = _try_lock(self.root / _LOCK) if fcntl is not None else None
        self.uploads = self.root / "jobs"
        self.uploads.mkdir()

    def note_batch(self, folder: Path) -> None:
        """Remember a batch folder this server writes into, for the cleanup after a kill."""
        with open(self.root / _BATCHES, "a", encoding="utf-8") as f:
            f.write(json.dumps(str(Path(folder).resolve())) + "\n")

    def open_in_browser(self, url: str) -> Path:
        """Open ``url`` in the browser through a redirect file that only this user can read; the file."""
        page = self.root / "open.html"
        target = html.escape(url, quote=True)
        text = (
            "<!doctype html><meta charset=utf-8><title>ppjax</title>"
            f'<meta http-equiv="refresh" content="0;url={target}">'
            f'<p>Opening ppjax. If nothing happens, <a href="{target}">open the page</a>.</p>\n'
        )  # fmt: skip
        fd = os.open(page, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        webbrowser.open(page.as_uri())
        return page

    def close(self) -> None:
        """Remove the folder, and the staging files of the batches this server was writing."""
        for batch in _batches(self.root):
            clean_staging(batch)
        shutil.rmtree(self.root, ignore_errors=True)
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
            self._lock_fd = None
