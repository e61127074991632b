"""`ppjax app` as a person starts it, in a process of its own, with no model installed and no
internet: the page still opens and says what to do; hostile and malformed requests are refused
cheaply; Cancel ends a batch; `--open` never puts the token on a command line; SIGTERM removes
every uploaded photo; a server killed outright is cleaned up by the next one."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from ..conftest import ROOT
from .serving import png_bytes
from .test_app_lifecycle import _stream_ends
from ..io.test_metadata import _png


def _start(tmp: Path, *args: str, env: dict | None = None) -> tuple[subprocess.Popen, str, str]:
    """(process, base address, token) of a ``ppjax app`` started with an empty store, offline."""
    environ = {**os.environ, "PPJAX_HOME": str(tmp / "store"), "PPJAX_OFFLINE": "1", "JAX_PLATFORMS": "cpu", "TMPDIR": str(tmp / "tmp"),
               "PYTHONUNBUFFERED": "1", **(env or {})}  # fmt: skip
    (tmp / "tmp").mkdir(exist_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-c", "from ppjax.cli import main; main()", "app", "--out-dir", str(tmp / "out"), *args],
        cwd=ROOT, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        found = re.search(r"open (http://127\.0\.0\.1:(\d+))/\?token=(\S+)", line)
        if found:
            base, token = found.group(1), found.group(3)
            for _ in range(100):  # the address is printed just before the server listens
                try:
                    with socket.create_connection(("127.0.0.1", int(found.group(2))), timeout=1):
                        return process, base, token
                except OSError:
                    time.sleep(0.1)
        if process.poll() is not None:
            break
    process.kill()
    raise AssertionError(f"ppjax app did not start: {process.stderr.read()[-3000:]}")


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def _workspaces(tmp: Path) -> list[Path]:
    return sorted((tmp / "tmp").glob("ppjax-app-*"))


@pytest.mark.slow
@pytest.mark.core
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads peak memory from /proc")
def test_the_page_opens_refuses_what_it_must_and_cleans_up_after_itself(tmp_path):
    browser_args = tmp_path / "browser-args.json"
    browser = tmp_path / "record-browser"
    browser.write_text(f"#!{sys.executable}\nimport json, sys\nopen({str(browser_args)!r}, 'w').write(json.dumps(sys.argv))\n")
    browser.chmod(browser.stat().st_mode | stat.S_IXUSR)

    first, base, token = _start(tmp_path, "--open", env={"BROWSER": str(browser)})
    try:
        client = httpx.Client(base_url=base, headers={"X-Ppjax-Token": token}, timeout=60)
        # --open: the browser got a private redirect file, never the token.
        deadline = time.monotonic() + 20
        while not browser_args.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        argv = json.loads(browser_args.read_text())
        assert token not in " ".join(argv)
        redirect = Path(argv[-1].removeprefix("file://"))
        assert stat.S_IMODE(redirect.stat().st_mode) == 0o600 and f"{base}/?token={token}" in redirect.read_text()
        assert not any(token in " ".join(p.cmdline()) for p in _processes())

        # No model and no internet: the page opens all the same, and says what to do.
        assert client.get(f"/?token={token}").status_code == 200
        while (status := client.get("/api/status").json())["state"] not in ("failed", "ready") and time.monotonic() < deadline + 60:
            time.sleep(0.2)
        assert status["state"] == "failed" and "ppjax models import places365" in status["message"], status

        # A 12000x14000 PNG of zeros (half a megabyte) is refused from its header.
        job = client.post("/api/jobs").json()["job"]
        before = _peak_rss_mb(first.pid)
        answer = client.post(f"/api/jobs/{job}/photos", params={"name": "zeros.png"}, content=_png(12000, 14000))
        assert answer.status_code == 400 and "12000x14000" in answer.json()["error"], answer.text
        assert _peak_rss_mb(first.pid) - before < 150

        # Malformed requests: 4xx.
        for body in (b"[]", b'{"look": [1]}'):
            assert 400 <= client.post(f"/api/jobs/{job}/start", content=body).status_code < 500
        assert client.post(f"/api/jobs/{job}/photos", params={"name": "\U0001f600" * 150}, content=png_bytes(0)).status_code == 400

        # An upload cut off mid-body leaves no file.
        port = int(base.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall((f"POST /api/jobs/{job}/photos?name=cut.png&token={token} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                       "Content-Length: 5000000\r\n\r\n").encode() + png_bytes(1)[:2000])  # fmt: skip
            time.sleep(0.3)
        time.sleep(5)
        assert not [p for p in _workspaces(tmp_path)[0].rglob("*") if p.is_file() and p.name.startswith(".upload-")]

        # A batch cancelled before it starts ends at once.
        assert client.post(f"/api/jobs/{job}/photos", params={"name": "ok.png"}, content=png_bytes(2)).status_code == 200
        client.post(f"/api/jobs/{job}/cancel")
        _stream_ends(client, job, 20)
        client.close()
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    assert len(_workspaces(tmp_path)) == 1  # killed: it could not clean up

    # The next server removes what the killed one left; SIGTERM removes its own, photos and all,
    # even while a page listens to a batch's progress.
    second, base, token = _start(tmp_path)
    try:
        assert len(_workspaces(tmp_path)) == 1 and not redirect.exists()
        client = httpx.Client(base_url=base, headers={"X-Ppjax-Token": token}, timeout=60)
        job = client.post("/api/jobs").json()["job"]
        assert client.post(f"/api/jobs/{job}/photos", params={"name": "IMG_0001.png"}, content=png_bytes(3)).status_code == 200
        listening = threading.Thread(target=lambda: _drain(client, job), daemon=True)
        listening.start()
        time.sleep(1)
        second.send_signal(signal.SIGTERM)
        second.wait(30)
    finally:
        if second.poll() is None:
            second.kill()
    assert second.returncode is not None
    assert _workspaces(tmp_path) == [], [str(p) for p in (tmp_path / "tmp").rglob("*")]


def _drain(client, job) -> None:
    try:
        with client.stream("GET", f"/api/jobs/{job}/events", timeout=60) as response:
            for _ in response.iter_lines():
                pass
    except httpx.HTTPError:
        pass


class _Proc:
    def __init__(self, pid: str):
        self.pid = pid

    def cmdline(self) -> list[str]:
        try:
            return Path(f"/proc/{self.pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            return []


def _processes() -> list[_Proc]:
    return [_Proc(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]
