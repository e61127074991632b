"""The page's server at its edges, in this process: Cancel ends a batch in every state, malformed
requests get a 4xx with one line, an upload cut off leaves nothing, batches never share a folder,
the ZIP never holds two entries of one name, previews of large photos, and a model that is not
ready. The worker's job here is a stand-in that copies each photo (the protection itself is tested
end to end in test_app_browser.py and test_app_kill.py); everything else is the real server."""

from __future__ import annotations

import io
import json
import socket
import threading
import time
import zipfile

import httpx
import pytest
from PIL import Image

from ppjax.app.jobs import FINAL_STATES, batch_folder
from ppjax.app.server import _zip

from ..conftest import shared_path
from .serving import png_bytes, serving


class CopyingWorker:
    """A stand-in for the protection: each photo waits at ``gate``, then is copied into the batch
    folder and marked done, unless the batch was cancelled meanwhile."""

    def __init__(self):
        self.gate = threading.Event()
        self.inside = threading.Event()
        self.finished = threading.Event()

    def __call__(self, job) -> None:
        from ppjax.io import read_image, write_image

        self.inside.set()
        try:
            for photo in job.photos:
                with job.lock:
                    if job.cancel.is_set():
                        return
                    job.set_photo(photo, "protecting", "protecting")
                self.gate.wait(60)
                with job.lock:
                    if photo.state in FINAL_STATES:
                        continue
                    photo.output = write_image(job.out_dir / photo.name, read_image(photo.original).rgb)
                    job.set_photo(photo, "done", "protected", result={"output_name": photo.name})
        finally:
            self.finished.set()


def _client(settings) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{settings.port}", headers={"X-Ppjax-Token": settings.token}, timeout=30)


def _new_job_with(client, *photos: bytes) -> str:
    job = client.post("/api/jobs").json()["job"]
    for n, data in enumerate(photos):
        assert client.post(f"/api/jobs/{job}/photos", params={"name": f"p{n}.png"}, content=data).status_code == 200
    return job


def _stream_ends(client, job, within: float) -> list[dict]:
    """The job's events until ``end``; fails when the stream has not ended ``within`` seconds."""
    events, deadline = [], time.monotonic() + within
    with client.stream("GET", f"/api/jobs/{job}/events", timeout=within) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: {}":
                events.append(json.loads(line[6:]))
            if line == "event: end":
                return events
            assert time.monotonic() < deadline, "the event stream did not end"
    raise AssertionError("the event stream closed without its end")


def test_cancel_ends_a_batch_in_every_state(tmp_path):
    stand_in = CopyingWorker()
    with serving(tmp_path, stand_in) as (settings, _worker), _client(settings) as client:
        # Open: not started yet.
        open_job = _new_job_with(client, png_bytes(0))
        assert client.post(f"/api/jobs/{open_job}/cancel").json()["cancelled"] is True
        events = _stream_ends(client, open_job, 5)
        assert events[-1] == {**events[-1], "type": "job", "state": "cancelled", "finished": 1, "total": 1}
        assert client.post(f"/api/jobs/{open_job}/start", json={}).status_code == 409

        # Running, and another queued behind it.
        running = _new_job_with(client, png_bytes(1), png_bytes(2))
        assert client.post(f"/api/jobs/{running}/start", json={}).status_code == 200
        assert stand_in.inside.wait(10)
        queued = _new_job_with(client, png_bytes(3))
        assert client.post(f"/api/jobs/{queued}/start", json={}).status_code == 200
        client.post(f"/api/jobs/{queued}/cancel")
        assert [e["state"] for e in _stream_ends(client, queued, 5) if e["type"] == "photo"][-1] == "cancelled"
        client.post(f"/api/jobs/{running}/cancel")
        events = _stream_ends(client, running, 5)  # while the worker is still inside the job
        assert not stand_in.finished.is_set()
        photo_states = {e["index"]: e["state"] for e in events if e["type"] == "photo"}
        assert photo_states == {0: "cancelled", 1: "cancelled"} and events[-1]["state"] == "cancelled"
        stand_in.gate.set()
        assert stand_in.finished.wait(10)
        time.sleep(0.5)
        # What the worker brought back after the cancel changed nothing: no "done", no file.
        later = _stream_ends(client, running, 5)
        assert later == events
        assert not any(p.is_file() for p in settings.out_root.rglob("*"))


def test_malformed_requests_get_a_4xx_with_one_line(tmp_path):
    with serving(tmp_path, CopyingWorker()) as (settings, _worker), _client(settings) as client:
        job = _new_job_with(client, png_bytes(0))
        for body in (b"[]", b'{"look": [1]}', b'{"strength": 3}', b'{"strength": "max"}', b'{"keep_metadata": "yes"}', b'{"private_names": 1}', b"{", b'"mid"', b"\xff\xfe"):
            answer = client.post(f"/api/jobs/{job}/start", content=body)
            assert 400 <= answer.status_code < 500 and "\n" not in answer.json()["error"], (body, answer.text)
        long_name = "\U0001f600" * 150 + ".png"  # 600 bytes
        answer = client.post(f"/api/jobs/{job}/photos", params={"name": long_name}, content=png_bytes(1))
        assert answer.status_code == 400 and "255 bytes" in answer.json()["error"]
        near_limit = "\U0001f600" * 60 + ".png"  # 244 bytes: taken, stored under a shorter name
        taken = client.post(f"/api/jobs/{job}/photos", params={"name": near_limit}, content=png_bytes(2)).json()
        assert len(taken["name"].encode()) <= 120 and taken["name"].endswith(".png")
        assert client.post(f"/api/jobs/{job}/photos", params={"name": "x.png"}, content=b"").status_code == 400
        assert client.post(f"/api/jobs/{job}/photos", params={"name": "x.png"}, content=b"%!PS-Adobe-3.0\n").status_code == 400
        assert client.post(f"/api/jobs/{job}/photos", params={"name": "x.png"}, content=b"x" * (4 * 1024 * 1024)).status_code == 413
        assert client.post("/api/jobs/0000/start", json={}).status_code == 404
        for path in (f"/api/jobs/{job}/photos/7/before.jpg", f"/api/jobs/{job}/photos/99999999999999999999/download",
                     f"/api/jobs/{job}/photos/0/sideways.jpg", f"/api/jobs/{job}/zip", f"/api/jobs/{job}/photos/0/download"):  # fmt: skip
            answer = client.get(path)
            assert answer.status_code == 404, (path, answer.text)
        assert client.get(f"/api/jobs/{job}/photos/0/before.jpg").headers["content-type"] == "image/jpeg"
        assert client.delete(f"/api/jobs/{job}/start").status_code == 405
        # Nothing but the photos taken in the job's folder.
        kept = sorted(p.name for p in (settings.work_dir / job).rglob("*") if p.is_file())
        assert kept == sorted(["p0.png", taken["name"], "0-before.jpg", "1-before.jpg"]), kept


def test_an_upload_cut_off_mid_body_leaves_nothing(tmp_path):
    with serving(tmp_path, CopyingWorker()) as (settings, _worker), _client(settings) as client:
        job = _new_job_with(client)
        with socket.create_connection(("127.0.0.1", settings.port)) as s:
            head = (
                f"POST /api/jobs/{job}/photos?name=cut.png&token={settings.token} HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{settings.port}\r\nContent-Type: image/png\r\nContent-Length: 2000000\r\n\r\n"
            )  # fmt: skip
            s.sendall(head.encode() + png_bytes(0)[:3000])
            time.sleep(0.5)
            assert list((settings.work_dir / job).glob(".upload-*")), "the upload never started"
        deadline = time.monotonic() + 5
        while list((settings.work_dir / job).glob(".upload-*")) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert list((settings.work_dir / job).iterdir()) == []


def test_batches_started_in_one_second_get_folders_of_their_own(tmp_path, monkeypatch):
    import ppjax.app.jobs as jobs

    monkeypatch.setattr(jobs, "_now_stamp", lambda: "2026-12-05_10-00-00")
    folders = [batch_folder(tmp_path) for _ in range(4)]
    assert [f.name for f in folders] == ["2026-12-05_10-00-00", "2026-12-05_10-00-00-2", "2026-12-05_10-00-00-3", "2026-12-05_10-00-00-4"]
    assert all(f.is_dir() for f in folders)


def test_the_zip_never_holds_two_entries_of_one_name(tmp_path):
    paths = []
    for n, name in enumerate(["A.png", "a.png", "a.png"]):
        (tmp_path / str(n)).mkdir()
        paths.append(tmp_path / str(n) / name)
        paths[-1].write_bytes(png_bytes(n))
    with zipfile.ZipFile(io.BytesIO(_zip(paths))) as z:
        names = z.namelist()
        assert names == ["A.png", "a (2).png", "a (3).png"]
        assert [z.read(n) for n in names] == [p.read_bytes() for p in paths]


def test_previews_of_a_full_size_photo_and_the_status_line_counts(tmp_path):
    stand_in = CopyingWorker()
    stand_in.gate.set()
    photo = sorted(shared_path("fullres").glob("*.jpg"))[0].read_bytes()  # 2560x1600
    with serving(tmp_path, stand_in, max_upload_mb=8) as (settings, _worker), _client(settings) as client:
        job = _new_job_with(client, photo, png_bytes(1))
        preview = client.get(f"/api/jobs/{job}/photos/0/before.jpg")
        assert preview.status_code == 200 and max(Image.open(io.BytesIO(preview.content)).size) == 900
        client.post(f"/api/jobs/{job}/start", json={})
        events = _stream_ends(client, job, 30)
        done = [e for e in events if e["type"] == "photo" and e["state"] == "done"]
        assert [e["finished"] for e in done] == [1, 2]  # each event says how many are finished
        assert events[-1] == {**events[-1], "type": "job", "state": "done", "finished": 2, "total": 2}


def test_a_model_that_is_not_ready_is_said_and_refuses_to_start(tmp_path):
    from ppjax.app.model import ModelLoader

    def make(report):
        report("downloading", file="resnet50_places365.pth.tar", done=10_000_000, total=97_000_000, message="downloading")
        raise RuntimeError("places365 could not be fetched: no internet. Without internet: ppjax models import places365 PATH")

    loader = ModelLoader("places365", make)
    loader._run()  # on this thread: the state it ends in
    with serving(tmp_path, CopyingWorker(), loader=loader) as (settings, _worker), _client(settings) as client:
        status = client.get("/api/status").json()
        assert status["state"] == "failed" and "ppjax models import places365" in status["message"]
        job = _new_job_with(client, png_bytes(0))  # photos can still be added
        answer = client.post(f"/api/jobs/{job}/start", json={})
        assert answer.status_code == 409 and "not ready" in answer.json()["error"]


def test_the_models_download_is_reported_as_it_goes(tmp_path, loopback_server, monkeypatch):
    """The page's model state follows a real download from a (loopback) server: its bytes as they
    come, then the conversion; a file that is not the checkpoint fails with what to do."""
    from ppjax.app.model import ModelLoader, fetch_then_load

    monkeypatch.setenv("PPJAX_OFFLINE", "0")  # downloads allowed, from the loopback server only
    body = b"not a checkpoint " * 40_000  # 680 kB
    loopback_server.files["/resnet50.pth.tar"] = body
    loopback_server.files["/categories.txt"] = b"/a/airfield 0\n"
    urls = {"checkpoint": loopback_server.url("/resnet50.pth.tar"), "categories": loopback_server.url("/categories.txt")}
    heard = []
    loader = ModelLoader("places365", fetch_then_load("places365", lambda: pytest.fail("built from a broken file"), root=tmp_path / "store", urls=urls))
    real_report = loader.report
    loader.report = lambda state, **fields: (heard.append((state, fields)), real_report(state, **fields))
    loader._run()
    downloading = [f for state, f in heard if state == "downloading" and f.get("total")]
    assert downloading and downloading[-1]["total"] in (len(body), 14) and downloading[0]["done"] <= downloading[-1]["done"]
    assert any(state == "converting" for state, _ in heard)
    status = loader.status()
    assert status["state"] == "failed" and "places365" in status["message"] and not loader.ready.is_set()


def test_the_pages_settings_reach_the_protection(tmp_path, monkeypatch):
    """What the page's boxes send is what `ppjax protect` is given: a private-names batch is planned
    with photo-<code> names, and no box ticked keeps each photo's own name."""
    from ppjax.app.jobs import Job, Photo
    from ppjax.app.protection import job_config
    from ppjax.protect.runner import plan

    monkeypatch.setenv("PPJAX_HOME", str(tmp_path / "home"))
    original = tmp_path / "uploads" / "IMG_20261205_143012.png"
    original.parent.mkdir()
    original.write_bytes(png_bytes(0))
    job = Job("j", tmp_path, photos=[Photo(0, original.name, original, (8, 8))], out_dir=tmp_path / "out")
    job.settings = {"strength": "high", "look": "noise", "keep_metadata": True, "private_names": True}
    config = job_config(job, "efficientnet-lite0")
    assert config.strength.value == "high" and config.keep_metadata and config.private_names
    assert plan(config).jobs[0][1].name.startswith("photo-")
    job.settings = {"strength": "mid", "look": "noise", "keep_metadata": False, "private_names": False}
    assert plan(job_config(job, "efficientnet-lite0")).jobs[0][1].name == "IMG_20261205_143012.png"
