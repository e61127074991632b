"""Fuzzing the page's API: every route driven with random methods, paths, query strings, headers
and bodies (random bytes, JSON of any shape, real and broken photos, PostScript, decompression
bombs) against a running server. Asserted: no 5xx, no file outside the job folders, no traceback
in the log. The quick run sends a few hundred requests; the slow one (``PPJAX_FUZZ_REQUESTS``,
10,000 by default) runs before a release."""

from __future__ import annotations

import collections
import json
import logging
import os
import threading
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ..io.test_metadata import _png
from .serving import png_bytes, serving
from .test_app_lifecycle import CopyingWorker

_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


class _Recorder(logging.Handler):
    """Every log record at WARNING or above, and any that carries a traceback."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.bad: list[str] = []

    def emit(self, record):
        if record.levelno >= logging.WARNING or record.exc_info:
            self.bad.append(self.format(record))


def _bodies(jobs_photo: bytes):
    return st.one_of(
        st.just(b""), st.binary(max_size=300), st.just(jobs_photo), st.just(jobs_photo[: len(jobs_photo) // 2]),
        st.just(b"%!PS-Adobe-3.0 EPSF-3.0\nshowpage\n"), st.just(_png(12000, 14000, rows=1)), st.just(_png(30000, 30000, rows=1)),
        st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _TEXT,
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(["strength", "look", "keep_metadata", "private_names", "x"]) | _TEXT, inner, max_size=4),
                     max_leaves=8).map(lambda v: json.dumps(v).encode()),
        st.fixed_dictionaries({}, optional={"strength": st.sampled_from(["low", "mid", "high", "max", 3, None]),
                                            "look": st.sampled_from(["noise", "edit", [1], {}, ""]),
                                            "keep_metadata": st.sampled_from([True, False, "yes", 1, None]),
                                            "private_names": st.sampled_from([True, False, "yes", 1, None])}).map(lambda v: json.dumps(v).encode()),
    )  # fmt: skip


def _run_fuzz(tmp_path: Path, requests: int) -> None:
    stand_in = CopyingWorker()
    stand_in.gate.set()
    recorder = _Recorder()
    loggers = [logging.getLogger(n) for n in ("uvicorn", "uvicorn.error", "uvicorn.access", "starlette", "")]
    for logger in loggers:
        logger.addHandler(recorder)
    thread_errors: list[str] = []
    previous_hook = threading.excepthook
    threading.excepthook = lambda args: thread_errors.append(f"{args.exc_type.__name__}: {args.exc_value}")
    try:
        with serving(tmp_path, stand_in) as (cfg, _worker):
            base = f"http://127.0.0.1:{cfg.port}"
            client = httpx.Client(base_url=base, timeout=10)
            auth = {"X-Ppjax-Token": cfg.token}
            photo = png_bytes(0)
            # A pool of batches in every state for the paths to name.
            pool = []
            for state in ("open", "open", "started", "started", "started", "cancelled", "empty"):
                job = client.post("/api/jobs", headers=auth).json()["job"]
                if state != "empty":
                    for n in range(2):
                        client.post(f"/api/jobs/{job}/photos", params={"name": f"{state}-{n}.png"}, headers=auth, content=photo)
                if state == "started":
                    client.post(f"/api/jobs/{job}/start", headers=auth, json={})
                if state == "cancelled":
                    client.post(f"/api/jobs/{job}/cancel", headers=auth)
                pool.append(job)
            prepared = list(pool)
            # Batches made during the run join the pool, so that later requests name them too.
            made = st.integers(0, 10**6).map(lambda i: pool[-1 - i % len(pool)])
            jobs = st.one_of(st.sampled_from(prepared), st.sampled_from(prepared), made, _TEXT.filter(lambda s: "/" not in s and "?" not in s and "#" not in s))
            index = st.sampled_from(["0", "0", "1", "2", "99999999999999999999999", "-1", "x"])
            # (path, the method the route takes): most requests use it, some any other.
            routes = st.one_of(
                st.just(("/", "GET")), st.just(("/api/status", "GET")), st.just(("/api/jobs", "POST")),
                st.builds(lambda n: (f"/static/{n}", "GET"), st.sampled_from(["app.js", "app.css", "favicon.svg", "../server.py", "%2e%2e%2fserver.py", "x"])),
                st.builds(lambda j, r: (f"/api/jobs/{j}/{r[0]}", r[1]), jobs,
                          st.sampled_from([("photos", "POST"), ("photos", "POST"), ("start", "POST"), ("start", "POST"), ("cancel", "POST"),
                                           ("zip", "GET"), ("events", "GET"), ("nothing", "GET")])),
                st.builds(lambda j, i, w: (f"/api/jobs/{j}/photos/{i}/{w}", "GET"), jobs, index,
                          st.sampled_from(["before.jpg", "after.jpg", "download", "x.jpg", "download/x"])),
                _TEXT.map(lambda s: ("/" + s, "GET")),
            )  # fmt: skip
            methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"])
            names = st.one_of(st.just("IMG_0001.png"), _TEXT, st.just("\U0001f600" * 150), st.just("../../outside.png"), st.just("a\x00b.png"), st.just(".." + "/" * 3))
            queries = st.fixed_dictionaries({}, optional={"token": st.sampled_from([cfg.token, "wrong", ""]), "name": names, "x": _TEXT})
            hostile = st.fixed_dictionaries({"host": st.sampled_from([f"127.0.0.1:{cfg.port}", f"localhost:{cfg.port}", "evil.example", ""])}, optional={
                "x-ppjax-token": st.sampled_from([cfg.token, "wrong"]), "origin": st.sampled_from([base, "http://evil.example", "null"]),
                "content-type": st.sampled_from(["application/json", "image/png", "text/plain", "multipart/form-data; boundary=x"]),
            })  # fmt: skip
            friendly = st.fixed_dictionaries({"host": st.just(f"127.0.0.1:{cfg.port}"), "x-ppjax-token": st.just(cfg.token)},
                                             optional={"origin": st.just(base), "content-type": st.sampled_from(["application/json", "image/png"])})  # fmt: skip
            headers = st.one_of(friendly, friendly, friendly, hostile)
            seen_5xx: list[str] = []
            answered = []

            @settings(max_examples=max(requests // 4, 50), deadline=None, database=None, suppress_health_check=list(HealthCheck))
            @given(routes, st.one_of(st.none(), st.none(), st.none(), methods), queries, headers, _bodies(photo), st.booleans())
            def one_request(route, other_method, query, head, body, a_photo):
                path, method = route[0], other_method or route[1]
                if a_photo and path.endswith("/photos"):
                    body = photo  # uploads that are taken, so that batches fill, start and finish
                try:
                    with client.stream(method, path, params=query, headers=head, content=body if method not in ("GET", "HEAD") else None) as r:
                        first = b""
                        for first in r.iter_raw():
                            break  # an event stream need not be read to its end
                        answered.append(r.status_code)
                        if r.status_code >= 500:
                            seen_5xx.append(f"{method} {path} {query} -> {r.status_code}")
                        if path == "/api/jobs" and r.status_code == 200:
                            pool.append(json.loads(first)["job"])
                except (httpx.InvalidURL, httpx.UnsupportedProtocol, httpx.LocalProtocolError, UnicodeEncodeError):
                    pass  # the client itself would not send it

            while len(answered) < requests and not seen_5xx:  # some examples are not sendable: go on until enough are answered
                one_request()
            client.close()
            assert seen_5xx == [], seen_5xx[:10]
            print(f"fuzz: {len(answered)} requests, statuses {sorted(collections.Counter(answered).items())}")
            # No file outside the job folders: under the uploads, only each job's originals and
            # previews; under the outputs, only each batch's photos and manifest.
            stray = []
            for p in tmp_path.rglob("*"):
                if not p.is_file():
                    continue
                rel = p.relative_to(tmp_path).parts
                if rel[0] == "work" and len(rel) == 4 and rel[2] in ("originals", "previews"):
                    continue
                if rel[0] == "out" and len(rel) == 3:
                    continue
                stray.append("/".join(rel))
            assert stray == [], stray[:20]
    finally:
        threading.excepthook = previous_hook
        for logger in loggers:
            logger.removeHandler(recorder)
    assert thread_errors == [] and [m for m in recorder.bad if "Traceback" in m or "Exception" in m] == [], (thread_errors, recorder.bad[:5])


def test_fuzz_the_api_briefly(tmp_path):
    _run_fuzz(tmp_path, 300)


@pytest.mark.slow
def test_fuzz_the_api_with_ten_thousand_requests(tmp_path):
    _run_fuzz(tmp_path, int(os.environ.get("PPJAX_FUZZ_REQUESTS", "10000")))
