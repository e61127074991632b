"""`ppjax app`'s web server: Starlette on 127.0.0.1, the page and its small JSON API.

Why Starlette and uvicorn: the standard light ASGI pair in Python, no template engine or front-end
build needed, streaming responses for server-sent events (the page's progress), and a test client;
the one JAX worker runs on a thread of its own, so the server answers while a job runs.

Safety. The server listens on loopback only. Every request but the page's static files must carry
the random token printed with the address (in the URL, or the ``X-Ppjax-Token`` header), so that
another local user or a web page in the browser cannot drive it; the ``Host`` header must be the
loopback address it serves (a DNS-rebinding page cannot reach it under another name), and a request
from another origin is refused. Uploads are capped in size and checked from their header (an image
ppjax reads, at most 80 megapixels: the decompression-bomb guard) before anything is decoded; each
is stored under a name of its own making inside its job's folder, so no file name reaches a path.
"""

from __future__ import annotations

import asyncio
import io
import json
import secrets
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePath

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ppjax.app.jobs import Job, UploadRefused, Worker, new_job
from ppjax.app.model import ModelLoader
from ppjax.app.protection import LOOK_METHODS
from ppjax.io.naming import plan_names

__all__ = ["AppSettings", "create_app"]

_STATIC = Path(__file__).resolve().parent / "static"
_STATIC_FILES = {"app.js": "text/javascript", "app.css": "text/css", "favicon.svg": "image/svg+xml"}
#: The longest file name taken, in UTF-8 bytes: what Linux, macOS and most other disks allow.
_MAX_NAME_BYTES = 255
#: Content-Security-Policy: everything from this server, nothing from anywhere else.
_CSP = "default-src 'self'; img-src 'self' blob:; connect-src 'self'; style-src 'self'; script-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"


@dataclass
class AppSettings:
    """``port``: where the server listens on 127.0.0.1 (the Host header must name it); ``token``:
    the secret every request carries; ``work_dir``: where uploads go; ``max_upload_mb``: the largest
    file taken; ``model``: what the page says it protects against."""

    port: int
    token: str
    work_dir: Path
    max_upload_mb: int = 200
    model: str = "places365"
    out_root: Path | None = None


def _error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(settings: AppSettings, worker: Worker, loader: ModelLoader | None = None, stopping: threading.Event | None = None) -> Starlette:
    """The Starlette app for ``settings``, protecting through ``worker`` once ``loader`` (None:
    always) says the model is ready; the event streams end when ``stopping`` is set."""
    jobs: dict[str, Job] = {}
    allowed_hosts = {f"127.0.0.1:{settings.port}", f"localhost:{settings.port}"}
    stopping = stopping or threading.Event()

    def guard(request: Request, *, token: bool = True) -> Response | None:
        """A refusal for a request from the wrong place, or None."""
        if request.headers.get("host", "") not in allowed_hosts:
            return _error("this server answers to 127.0.0.1 only", 403)
        origin = request.headers.get("origin")
        if origin is not None and origin not in {f"http://{h}" for h in allowed_hosts}:
            return _error("requests from other pages are refused", 403)
        if token:
            given = request.headers.get("x-ppjax-token") or request.query_params.get("token") or ""
            if not secrets.compare_digest(given.encode(), settings.token.encode()):
                return _error("this page needs the address ppjax app printed (with its token)", 403)
        return None

    def job_of(request: Request) -> Job | Response:
        """The batch the request names, once :func:`guard` lets it through; else the refusal."""
        refused = guard(request)
        if refused:
            return refused
        job = jobs.get(request.path_params["job"])
        return job if job is not None else _error("no such batch", 404)

    async def page(request: Request) -> Response:
        refused = guard(request)
        if refused:
            return refused
        html = (_STATIC / "index.html").read_text(encoding="utf-8").replace("{{MODEL}}", settings.model)
        return Response(html, media_type="text/html", headers=_headers())

    async def static(request: Request) -> Response:
        refused = guard(request, token=False)
        if refused:
            return refused
        name = request.path_params["name"]
        if name not in _STATIC_FILES:
            return _error("not found", 404)
        return FileResponse(_STATIC / name, media_type=_STATIC_FILES[name], headers=_headers())

    async def status(request: Request) -> Response:
        refused = guard(request)
        if refused:
            return refused
        return JSONResponse(loader.status() if loader is not None else {"model": settings.model, "state": "ready", "message": ""})

    async def create_job(request: Request) -> Response:
        refused = guard(request)
        if refused:
            return refused
        job = new_job(settings.work_dir)
        jobs[job.id] = job
        return JSONResponse({"job": job.id, "max_upload_mb": settings.max_upload_mb})

    async def upload(request: Request) -> Response:
        job = job_of(request)
        if isinstance(job, Response):
            return job
        limit = settings.max_upload_mb * 1024 * 1024
        name = request.query_params.get("name", "photo")
        shown = name if len(name) <= 80 else name[:77] + "..."
        if len(name.encode("utf-8", errors="replace")) > _MAX_NAME_BYTES:
            return _error(f"{shown}: the file name is longer than {_MAX_NAME_BYTES} bytes, more than a disk takes; rename the file", 400)
        too_large = f"{shown}: larger than the {settings.max_upload_mb} MB a photo may have here"
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return _error(too_large, 413)
        if job.state != "open":
            return _error(f"{shown}: this batch has started; add photos to a new one", 409)
        incoming = job.folder / f".upload-{secrets.token_hex(8)}"
        size, taken = 0, False
        try:
            with open(incoming, "wb") as f:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        return _error(too_large, 413)
                    f.write(chunk)
            if size == 0:
                return _error(f"{shown}: the file is empty", 400)
            photo = await asyncio.to_thread(job.add_upload, name, incoming)
            taken = True
        except UploadRefused as e:
            return _error(str(e), 400)
        except ClientDisconnect:
            return _error(f"{shown}: the upload was cut off", 400)
        finally:
            if not taken:  # an upload refused, cut off or cancelled leaves nothing behind
                incoming.unlink(missing_ok=True)
        return JSONResponse({"index": photo.index, "name": photo.name, "width": photo.size[1], "height": photo.size[0]})

    async def start(request: Request) -> Response:
        job = job_of(request)
        if isinstance(job, Response):
            return job
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            return _error("the settings are not JSON", 400)
        if not isinstance(body, dict):
            return _error("the settings must be a JSON object", 400)
        strength, look, keep = body.get("strength", "mid"), body.get("look", "noise"), body.get("keep_metadata", False)
        private = body.get("private_names", False)
        if not isinstance(strength, str) or strength not in ("low", "mid", "high"):
            return _error("strength must be low, mid or high", 400)
        if not isinstance(look, str) or look not in LOOK_METHODS:
            return _error(f"look must be {' or '.join(LOOK_METHODS)}", 400)
        if not isinstance(keep, bool):
            return _error("keep_metadata must be true or false", 400)
        if not isinstance(private, bool):
            return _error("private_names must be true or false", 400)
        if loader is not None and not loader.ready.is_set():
            return _error(f"the model is not ready: {loader.status().get('message', '')}", 409)
        with job.lock:
            if not job.photos:
                return _error("add photos first", 400)
            if job.state != "open":
                return _error("this batch has started already", 409)
            job.state = "queued"
        job.settings = {"strength": strength, "look": look, "keep_metadata": keep, "private_names": private}
        try:
            await asyncio.to_thread(worker.submit, job)
        except OSError as e:
            job.cancel_now(f"not started: the output folder cannot be made ({e.strerror or e})")
            return _error(f"cannot make a folder for the protected photos in {worker.out_root} ({e.strerror or e})", 503)
        return JSONResponse({"job": job.id, "photos": len(job.photos), "folder": str(job.out_dir)})

    async def cancel(request: Request) -> Response:
        job = job_of(request)
        if isinstance(job, Response):
            return job
        ended_now = job.cancel_now()
        return JSONResponse({"job": job.id, "cancelled": ended_now or job.state == "cancelled", "state": job.state})

    async def events(request: Request) -> Response:
        job = job_of(request)
        if isinstance(job, Response):
            return job
        if request.method == "HEAD":  # headers only: an endless stream would hold a kept-alive connection
            return Response(media_type="text/event-stream", headers={"Cache-Control": "no-store", **_headers()})

        async def stream():
            sent = 0
            yield "retry: 1000\n\n"
            while True:
                with job.lock:
                    fresh = job.events[sent:]
                    ended = job.ended
                for event in fresh:
                    yield f"data: {json.dumps(event)}\n\n"
                sent += len(fresh)
                if ended and sent == len(job.events):
                    yield "event: end\ndata: {}\n\n"
                    return
                if stopping.is_set() or await request.is_disconnected():
                    return
                await asyncio.sleep(0.2)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store", **_headers()})

    async def preview(request: Request) -> Response:
        job = job_of(request)
        if isinstance(job, Response):
            return job
        photo = _photo(job, request)
        which = request.path_params["which"]
        if photo is None or which not in ("before", "after"):
            return _error("no such photo", 404)
        path = photo.previews.get(which)
        if path is None or not path.is_file():
            return _error("not there (yet)", 404)
        return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "no-store", **_headers()})

    async def download(request: Request) -> Response:
        job = job_of(request)
        if isinstance(job, Response):
            return job
        photo = _photo(job, request)
        if photo is None or photo.output is None:
            return _error("not protected (yet)", 404)
        if not photo.output.is_file():
            return _error(f"{photo.output.name} is no longer in {photo.output.parent}", 410)
        return FileResponse(photo.output, filename=photo.output.name, headers=_headers())

    async def archive(request: Request) -> Response:
        job = job_of(request)
        if isinstance(job, Response):
            return job
        done = [p.output for p in job.photos if p.output is not None and p.output.is_file()]
        if not done:
            return _error("nothing protected yet", 404)
        data = await asyncio.to_thread(_zip, done)
        headers = {"Content-Disposition": 'attachment; filename="protected-photos.zip"', **_headers()}
        return Response(data, media_type="application/zip", headers=headers)

    routes = [
        Route("/", page),
        Route("/static/{name}", static),
        Route("/api/status", status),
        Route("/api/jobs", create_job, methods=["POST"]),
        Route("/api/jobs/{job}/photos", upload, methods=["POST"]),
        Route("/api/jobs/{job}/start", start, methods=["POST"]),
        Route("/api/jobs/{job}/cancel", cancel, methods=["POST"]),
        Route("/api/jobs/{job}/events", events),
        Route("/api/jobs/{job}/photos/{index:int}/{which}.jpg", preview),
        Route("/api/jobs/{job}/photos/{index:int}/download", download),
        Route("/api/jobs/{job}/zip", archive),
    ]
    return Starlette(routes=routes)


def _headers() -> dict:
    return {"Content-Security-Policy": _CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


def _photo(job: Job, request: Request):
    index = request.path_params["index"]
    return job.photos[index] if 0 <= index < len(job.photos) else None


def _zip(paths) -> bytes:
    """A ZIP of the files under their own names (stored: they are compressed images already); two
    names one disk would take for one (by case) never both go in as they are."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for (_path, name), path in zip(plan_names([(Path(p), PurePath(Path(p).name)) for p in paths])[0], paths):
            z.write(path, arcname=str(name))
    return buf.getvalue()
