"""`ppjax app`: the local web page, on 127.0.0.1 with a token, one JAX worker behind it."""

from __future__ import annotations

import secrets
import socket
import webbrowser
from pathlib import Path
from typing import Annotated, Optional

import typer

from ppjax.cli.common import err, fail, load_or_fetch, out


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _default_out() -> Path:
    import platformdirs

    return Path(platformdirs.user_pictures_dir()) / "ppjax-protected"


def app(
    model: Annotated[str, typer.Option(help="Classifier to protect against (installed, or fetched on first use).")] = "places365",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port on 127.0.0.1 (0: a free one).")] = 0,
    out_dir: Annotated[Optional[Path], typer.Option("--out-dir", help="Where protected photos are written as each is done, a folder per batch (default: your Pictures folder's ppjax-protected).")] = None,
    max_upload_mb: Annotated[int, typer.Option(min=1, help="The largest photo file taken, in MB.")] = 200,
    open_browser: Annotated[bool, typer.Option("--open", help="Open the page in your browser.")] = False,
) -> None:
    """A local web page to protect photos: drop them, pick a strength, download the protected ones (served on 127.0.0.1 only, offline)."""
    import uvicorn

    from ppjax import store
    from ppjax.app.jobs import Worker
    from ppjax.app.protection import Protection
    from ppjax.app.server import AppSettings, create_app, work_dir

    store.use_jit_cache()
    protection = Protection(model, load_or_fetch, store.programs_folder())  # fetched before the page opens
    out_root = out_dir or _default_out()
    port = port or _free_port()
    settings = AppSettings(port=port, token=secrets.token_urlsafe(24), work_dir=work_dir(), max_upload_mb=max_upload_mb, model=model, out_root=out_root)
    server_app = create_app(settings, Worker(out_root, protection))
    url = f"http://127.0.0.1:{port}/?token={settings.token}"
    out.print(f"ppjax app: open {url}")
    out.print(f"protected photos go to {out_root}; Ctrl+C stops the server")
    if open_browser:
        webbrowser.open(url)
    try:
        uvicorn.run(server_app, host="127.0.0.1", port=port, log_level="warning")
    except OSError as e:
        raise fail(f"cannot serve on 127.0.0.1:{port} ({e})") from None
    err.print("stopped")
