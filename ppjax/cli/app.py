"""`ppjax app`: the local web page, on 127.0.0.1 with a token, one JAX worker behind it.

The page is served at once; the model is fetched (the first time) and loaded on a thread of its
own meanwhile, and the page says how far that is, or what to do when it fails. The uploads live in
a private temporary folder (:mod:`ppjax.app.workspace`) that the server removes when it stops
(Ctrl+C, SIGTERM); a server killed outright leaves it to the next one to remove.
"""

from __future__ import annotations

import secrets
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Annotated, Optional

import typer

from ppjax.cli.common import err, fail, out


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _default_out() -> Path:
    import platformdirs

    return Path(platformdirs.user_pictures_dir()) / "ppjax-protected"


def _terminate(signum, frame) -> None:
    """SIGTERM as an exit that runs the cleanup (Python's default ends the process on the spot)."""
    sys.exit(128 + signum)


def app(
    model: Annotated[str, typer.Option(help="Classifier to protect against (installed, or fetched on first use while the page is already open).")] = "places365",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port on 127.0.0.1 (0: a free one).")] = 0,
    out_dir: Annotated[Optional[Path], typer.Option("--out-dir", help="Where protected photos are written as each is done, a new folder per batch (default: your Pictures folder's ppjax-protected).")] = None,
    max_upload_mb: Annotated[int, typer.Option(min=1, help="The largest photo file taken, in MB.")] = 200,
    open_browser: Annotated[bool, typer.Option("--open", help="Open the page in your browser (through a private redirect file: the page's token never stands on a command line).")] = False,
) -> None:
    """A local web page to protect photos: drop them, pick a strength, download the protected ones (served on 127.0.0.1 only, offline)."""
    import uvicorn

    from ppjax import store
    from ppjax.app.jobs import Worker
    from ppjax.app.model import ModelLoader, fetch_then_load
    from ppjax.app.protection import Protection
    from ppjax.app.server import AppSettings, create_app
    from ppjax.app.workspace import Workspace

    previous = signal.signal(signal.SIGTERM, _terminate)
    workspace = Workspace()
    stopping = threading.Event()
    try:
        store.use_jit_cache()
        loader = ModelLoader(model, fetch_then_load(model, lambda: Protection(model, store.load_model, store.programs_folder())))
        out_root = out_dir or _default_out()
        port = port or _free_port()
        settings = AppSettings(port=port, token=secrets.token_urlsafe(24), work_dir=workspace.uploads, max_upload_mb=max_upload_mb, model=model, out_root=out_root)

        def run_job(job) -> None:
            loader.ready.wait()
            loader.protection(job)

        worker = Worker(out_root, run_job, on_batch=workspace.note_batch)
        server_app = create_app(settings, worker, loader, stopping)

        class Server(uvicorn.Server):
            def handle_exit(self, sig, frame) -> None:
                stopping.set()  # the pages' event streams end, so that the server can
                super().handle_exit(sig, frame)

        config = uvicorn.Config(server_app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=3)
        server = Server(config)
        loader.start()
        url = f"http://127.0.0.1:{port}/?token={settings.token}"
        out.print(f"ppjax app: open {url}")
        out.print(f"protected photos go to {out_root}, a folder per batch; Ctrl+C stops the server")
        if open_browser:
            threading.Timer(0.5, workspace.open_in_browser, (url,)).start()
        try:
            server.run()
        except OSError as e:
            raise fail(f"cannot serve on 127.0.0.1:{port} ({e})") from None
        if not server.started:
            raise fail(f"cannot serve on 127.0.0.1:{port}")
    finally:
        stopping.set()
        workspace.close()
        signal.signal(signal.SIGTERM, previous)
    err.print("stopped")
