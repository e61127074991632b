"""The app's server on a free loopback port in this process (uvicorn on a thread), and photos to
drop on it."""

from __future__ import annotations

import contextlib
import io
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image


@contextlib.contextmanager
def serving(tmp: Path, run_job, *, loader=None, max_upload_mb: int = 3, token: str = "t0ken-for-tests"):
    """``(settings, worker)`` of a server protecting through ``run_job(job)`` (see
    :class:`ppjax.app.jobs.Worker`), uploads under ``tmp/work`` and outputs under ``tmp/out``."""
    import uvicorn

    from ppjax.app.jobs import Worker
    from ppjax.app.server import AppSettings, create_app
    from ppjax.cli.app import _free_port

    port = _free_port()
    settings = AppSettings(port=port, token=token, work_dir=tmp / "work", max_upload_mb=max_upload_mb, model="efficientnet-lite0", out_root=tmp / "out")
    settings.work_dir.mkdir(parents=True, exist_ok=True)
    worker = Worker(settings.out_root, run_job)
    stopping = threading.Event()
    app = create_app(settings, worker, loader, stopping)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    try:
        yield settings, worker
    finally:
        stopping.set()
        server.should_exit = True
        thread.join(timeout=10)


def png_bytes(seed: int = 0, size: tuple[int, int] = (48, 64)) -> bytes:
    """A small real-looking PNG."""
    rng = np.random.default_rng(seed)
    h, w = size
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([x * 4 % 256, y * 5 % 256, (x + y) * 3 % 256], -1) + rng.integers(0, 20, (h, w, 3))
    buf = io.BytesIO()
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()
