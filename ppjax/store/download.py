"""Downloads that resume: HTTP Range, retries, and a file that appears only when complete."""

from __future__ import annotations

import http.client
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable

__all__ = ["ModelStoreError", "OfflineError", "DownloadError", "ProgressFn", "ENV_OFFLINE", "download"]

ENV_OFFLINE = "PPJAX_OFFLINE"  # "1": never download; fail with the offline instructions instead

ProgressFn = Callable[[int, int | None], None]
"""Called with (bytes so far, total bytes or None) while downloading."""


class ModelStoreError(Exception):
    """Something a user can act on went wrong in the store; the message says what to do."""


class OfflineError(ModelStoreError):
    pass


class DownloadError(ModelStoreError):
    pass



def _host(url: str) -> str:
    return urllib.parse.urlsplit(url).netloc or url


def download(
    url: str,
    dest: str | os.PathLike,
    progress: ProgressFn | None = None,
    *,
    timeout: float = 30.0,
    retries: int = 3,
) -> Path:
    """Download ``url`` to ``dest``, resuming from ``dest.part`` if an earlier attempt left one.

    A dropped connection is retried up to ``retries`` times, each resuming where the last stopped
    (HTTP Range); a server that ignores Range restarts from zero. The file appears under ``dest``
    only once complete (checked against Content-Length). Raises :class:`OfflineError` when the host
    cannot be reached and :class:`DownloadError` otherwise; a partial file is kept for next time.
    """
    dest = Path(dest)
    if os.environ.get(ENV_OFFLINE, "") not in ("", "0"):
        raise OfflineError(f"not downloading {url}: {ENV_OFFLINE} is set")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    last_error: Exception | None = None
    for _attempt in range(retries + 1):
        try:
            _download_once(url, part, progress, timeout)
            os.replace(part, dest)
            return dest
        except urllib.error.HTTPError as e:
            if e.code == 416 and part.exists():  # our partial file is not a prefix the server knows
                part.unlink()
                last_error = e
                continue
            raise DownloadError(f"{url}: server answered HTTP {e.code} {e.reason}") from None
        except urllib.error.URLError as e:  # no connection at all: name lookup, refused, unreachable
            kept = f"; the {part.stat().st_size:,} bytes already downloaded are kept" if part.exists() else ""
            raise OfflineError(f"cannot reach {_host(url)} ({e.reason}){kept}") from None
        except (OSError, http.client.HTTPException, _Truncated) as e:  # reset, timeout, short body
            last_error = e
    have = part.stat().st_size if part.exists() else 0
    raise DownloadError(
        f"{url}: download interrupted after {have:,} bytes ({last_error}); run the same command again to resume"
    )


class _Truncated(Exception):
    pass


def _download_once(url: str, part: Path, progress: ProgressFn | None, timeout: float) -> None:
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "ppjax"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as r:
        if offset and r.status == 206:
            start = r.headers.get("Content-Range", "").removeprefix("bytes ").split("-")[0]
            if start != str(offset):
                raise DownloadError(f"{url}: server resumed at byte {start!r}, expected {offset}")
            mode = "ab"
        else:
            offset, mode = 0, "wb"
        length = r.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        done = offset
        if progress:
            progress(done, total)
        with open(part, mode) as f:
            while chunk := r.read(1 << 20):
                f.write(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
            f.flush()
            os.fsync(f.fileno())
    if total is not None and done != total:
        raise _Truncated(f"got {done:,} of {total:,} bytes")

