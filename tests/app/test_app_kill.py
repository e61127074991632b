"""`ppjax app` killed with SIGKILL in the middle of a batch, then started again: every photo in the
batch's folder is whole, decodes, and is the one the manifest recorded with its verdict; what the
killed server was writing and its folder of uploads are gone once the next one starts."""

from __future__ import annotations

import json
from pathlib import Path
import signal
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from ppjax.io import read_image
from ppjax.protect.manifest import newest_outputs, sha256_file

from ..attack_models import imagenet_photos
from .test_app_process import _start, _workspaces


def _photo_bytes(rgb: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.slow
@pytest.mark.core
def test_a_server_killed_mid_batch_leaves_only_whole_verified_photos(tmp_path, lite0_store):
    root, _ = lite0_store
    env = {"PPJAX_HOME": str(root)}
    server, base, token = _start(tmp_path, "--model", "efficientnet-lite0", env=env)
    try:
        client = httpx.Client(base_url=base, headers={"X-Ppjax-Token": token}, timeout=120)
        deadline = time.monotonic() + 300
        while client.get("/api/status").json()["state"] != "ready":
            assert time.monotonic() < deadline and server.poll() is None, client.get("/api/status").json()
            time.sleep(0.5)
        job = client.post("/api/jobs").json()["job"]
        photos = imagenet_photos(5)
        for image_id, rgb, _ in photos:
            assert client.post(f"/api/jobs/{job}/photos", params={"name": f"{image_id}.png"}, content=_photo_bytes(rgb)).status_code == 200
        folder = client.post(f"/api/jobs/{job}/start", json={"strength": "low"}).json()["folder"]
        done = 0
        with client.stream("GET", f"/api/jobs/{job}/events", timeout=900) as events:
            for line in events.iter_lines():
                if line.startswith("data: ") and json.loads(line[6:]).get("state") == "done":
                    done += 1
                    break
        time.sleep(3)  # well inside the next photo's protection
        server.send_signal(signal.SIGKILL)
        server.wait(30)
    finally:
        if server.poll() is None:
            server.kill()
    batch = Path(folder)
    assert done == 1 and len(_workspaces(tmp_path)) == 1

    def check_outputs() -> list[str]:
        records = newest_outputs(batch)
        visible = sorted(p.name for p in batch.iterdir() if not p.name.startswith("."))
        assert 1 <= len(visible) < len(photos), visible
        for name in visible:
            path = batch / name
            assert read_image(path).size == photos[0][1].shape[:2]  # whole and decodable
            record = records[name]  # recorded ...
            assert record["output_sha256"] == sha256_file(path)  # ... as these very bytes ...
            assert record["variants"] and record["protected"] is not None  # ... with their verdict
        return visible

    before_restart = check_outputs()
    # What a kill during a write leaves (the kill above may or may not have come during one).
    (batch / ".next.png.ppjax-staged.png").write_bytes(b"\x89PNG half")
    (batch / "..next.png.ppjax-staged.png.a1b2c3d4.part").write_bytes(b"\x89PNG")
    again, base, token = _start(tmp_path, "--model", "efficientnet-lite0", env=env)
    try:
        assert _workspaces(tmp_path) and len(_workspaces(tmp_path)) == 1  # the killed server's uploads are gone
        leftovers = [p.name for p in batch.iterdir() if p.name.startswith(".") and not p.name.startswith(".ppjax-manifest")]
        assert leftovers == []  # no staging or partial file of the photo it was writing
        assert check_outputs() == before_restart
    finally:
        again.send_signal(signal.SIGTERM)
        again.wait(60)
    assert _workspaces(tmp_path) == []
