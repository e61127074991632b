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
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ppjax.app.jobs import Job, UploadRefused, Worker, new_job
from ppjax.app.protection import LOOK_METHODS

__all__ = ["AppSettings", "create_app"]

_STATIC = Path(__file__).resolve().parent / "static"
_STATIC_FILES = {"app.js": "text/javascript", "app.css": "text/css", "favicon.svg": "image/svg+xml"}
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


def create_app(settings: AppSettings, worker: Worker) -> Starlette:
    """The Starlette app for ``settings``, protecting through ``worker``."""
    jobs: dict[str, Job] = {}
    allowed_hosts = {f"127.0.0.1:{settings.port}", f"localhost:{settings.port}"}

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
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return _error(f"{name}: larger than the {settings.max_upload_mb} MB a photo may have here", 413)
        incoming = job.folder / f".upload-{secrets.token_hex(8)}"
        size = 0
        with open(incoming, "wb") as f:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    f.close()
                    incoming.unlink(missing_ok=True)
                    return _error(f"{name}: larger than the {settings.max_upload_mb} MB a photo may have here", 413)
                f.write(chunk)
        try:
            photo = await asyncio.to_thread(job.add_upload, name, incoming)
        except UploadRefused as e:
            incoming.unlink(missing_ok=True)
            return _error(str(e), 400)
        return JSONResponse({"index": photo.index, "name": photo.name, "width": photo.size[1], "height": photo.size[0]})

    async def start(request: Request) -> Response:
        job = job_of(request)
        if isinstance(job, Response):
            return job
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            return _error("the settings are not JSON", 400)
        strength = body.get("strength", "mid")
        if strength not in ("low", "mid", "high"):
            return _error("strength must be low, mid or high", 400)
        look = body.get("look", "noise")
        if look not in LOOK_METHODS:
            return _error(f"look must be {' or '.join(LOOK_METHODS)}", 400)
        if not job.photos:
            return _error("add photos first", 400)
        with job.lock:
            if job.state != "open":
                return _error("this batch has started already", 409)
            job.state = "queued"
        job.settings = {"strength": strength, "look": look, "keep_metadata": bool(body.get("keep_metadata", False))}
        worker.submit(job)
        return JSONResponse({"job": job.id, "photos": len(job.photos)})

    async def cancel(request: Request) -> Response:
        job = job_of(request)
        if isinstance(job, Response):
            return job
        job.cancel.set()
        return JSONResponse({"job": job.id, "cancelled": True})

    async def events(request: Request) -> Response:
        job = job_of(request)
        if isinstance(job, Response):
            return job

        async def stream():
            sent = 0
            yield "retry: 1000\n\n"
            while True:
                with job.lock:
                    fresh = job.events[sent:]
                for event in fresh:
                    yield f"data: {json.dumps(event)}\n\n"
                sent += len(fresh)
                if job.state in ("done", "cancelled") and not fresh and sent == len(job.events):
                    yield "event: end\ndata: {}\n\n"
                    return
                if await request.is_disconnected():
                    return
                await asyncio.sleep(0.2)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store", **_headers()})

    async def preview(request: Request) -> Response:
        job = job_of(request)
        if isinstance(job, Response):
            return job
        photo = _photo(job, request)
        if photo is None:
            return _error("no such photo", 404)
        which = request.path_params["which"]
        path = photo.original if which == "before" else photo.output
        if which not in ("before", "after") or path is None:
            return _error("not there (yet)", 404)
        data = await asyncio.to_thread(_preview_jpeg, path)
        if data is None:
            return _error("cannot be shown", 415)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store", **_headers()})

    async def download(request: Request) -> Response:
        job = job_of(request)
        if isinstance(job, Response):
            return job
        photo = _photo(job, request)
        if photo is None or photo.output is None:
            return _error("not protected (yet)", 404)
        return FileResponse(photo.output, filename=photo.output.name, headers=_headers())

    async def archive(request: Request) -> Response:
        job = job_of(request)
        if isinstance(job, Response):
            return job
        done = [p for p in job.photos if p.output is not None]
        if not done:
            return _error("nothing protected yet", 404)
        data = await asyncio.to_thread(_zip, [p.output for p in done])
        headers = {"Content-Disposition": 'attachment; filename="protected-photos.zip"', **_headers()}
        return Response(data, media_type="application/zip", headers=headers)

    routes = [
        Route("/", page),
        Route("/static/{name}", static),
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


def _preview_jpeg(path: Path, side: int = 900) -> bytes | None:
    """A JPEG of at most ``side`` pixels a side of an image file (browsers show no HEIC)."""
    from PIL import Image

    from ppjax.io.images import ImageReadError, read_image

    try:
        img = Image.fromarray(read_image(path).rgb)
    except ImageReadError:
        return None
    img.thumbnail((side, side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=88)
    return buf.getvalue()


def _zip(paths) -> bytes:
    """A ZIP of the files under their own names (stored: they are compressed images already)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for path in paths:
            z.write(path, arcname=Path(path).name)
    return buf.getvalue()


def work_dir() -> Path:
    """A private folder for one server's uploads."""
    return Path(tempfile.mkdtemp(prefix="ppjax-app-"))
