"""The page's work: jobs of uploaded photos, protected one job at a time by one JAX worker thread.

A :class:`Job` holds its photos (each uploaded into the job's own folder under a safe name), the
settings the person chose, and the list of events the page reads (one per change of a photo's
state, and of the job's). :class:`Worker` protects queued jobs in turn with
:func:`ppjax.protect.runner.run`, writing each protected photo into the output folder the moment it
is final, and adds what the classifier infers from the original and from the protected file (its
top classes through the Places365 demo's view, 256 and a centre 224) to each photo's result.
"""

from __future__ import annotations

import datetime as _dt
import queue
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ppjax.io.images import DEFAULT_MAX_PIXELS, ImageReadError, peek_size, read_image

__all__ = ["Photo", "Job", "Worker", "safe_name", "UploadRefused"]

#: The states a photo goes through, in the page's words.
STATES = ("uploading", "ready", "queued", "compiling", "protecting", "verifying", "done", "error", "cancelled")


class UploadRefused(ValueError):
    """An upload that is not taken, with the sentence the page shows."""


def safe_name(name: str, taken: set[str]) -> str:
    """A file name for an upload: its last path part only, no control or path characters, at most
    120 characters, not one of ``taken`` (a number added)."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = re.sub(r"[\x00-\x1f\x7f<>:\"|?*]", "_", base).strip(" .") or "photo"
    stem, dot, suffix = base.rpartition(".")
    stem, suffix = (stem, "." + suffix) if dot and stem else (base, "")
    stem, suffix = stem[:100], suffix[:12]
    candidate, n = stem + suffix, 2
    while candidate.lower() in taken:
        candidate = f"{stem}-{n}{suffix}"
        n += 1
    return candidate


@dataclass
class Photo:
    """One uploaded photo of a job: its stored original, the output once written, its state."""

    index: int
    name: str
    original: Path
    size: tuple[int, int]
    state: str = "ready"
    message: str = ""
    output: Path | None = None
    result: dict | None = None


@dataclass
class Job:
    """A person's batch of photos and the events the page reads (``events`` only grows)."""

    id: str
    folder: Path
    photos: list[Photo] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    state: str = "open"  # open (taking uploads), queued, running, done, cancelled
    settings: dict = field(default_factory=dict)
    out_dir: Path | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def emit(self, event: dict) -> None:
        with self.lock:
            self.events.append({**event, "at": time.time()})

    def set_photo(self, photo: Photo, state: str, message: str = "", **extra) -> None:
        photo.state, photo.message = state, message
        self.emit({"type": "photo", "index": photo.index, "name": photo.name, "state": state, "message": message, **extra})

    def set_state(self, state: str) -> None:
        self.state = state
        done = sum(p.state in ("done", "error", "cancelled") for p in self.photos)
        self.emit({"type": "job", "state": state, "done": done, "total": len(self.photos)})

    def add_upload(self, filename: str, data_path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Photo:
        """Take an uploaded file (already saved at ``data_path``, inside this job's folder) as a photo,
        or raise :class:`UploadRefused` saying why."""
        size = peek_size(data_path)
        if size is None:
            raise UploadRefused(f"{filename}: not a photo ppjax can read (JPEG, PNG, HEIC, WebP, TIFF, BMP or GIF)")
        if size[0] * size[1] > max_pixels:
            raise UploadRefused(f"{filename}: {size[1]}x{size[0]} pixels is larger than the {max_pixels // 1_000_000}-megapixel limit")
        with self.lock:
            if self.state != "open":
                raise UploadRefused(f"{filename}: this batch has started; add photos to a new one")
            name = safe_name(filename, {p.name.lower() for p in self.photos})
            target = self.folder / "originals" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            data_path.replace(target)
            photo = Photo(len(self.photos), name, target, size)
            self.photos.append(photo)
        self.set_photo(photo, "ready")
        return photo


def _now_stamp() -> str:
    return _dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")


class Worker:
    """Runs queued jobs one at a time on a thread of its own (the one JAX worker, so the server
    stays responsive): ``run_job(job, cancel_rest)`` protects a job's photos into ``job.out_dir``
    (a folder per job under ``out_root``), reporting through the job's events."""

    def __init__(self, out_root: Path, run_job: Callable[[Job, Callable], None]):
        self.out_root = Path(out_root)
        self.run_job = run_job
        self.jobs: "queue.SimpleQueue[Job]" = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._loop, name="ppjax-app-worker", daemon=True)
        self.thread.start()

    def submit(self, job: Job) -> None:
        job.out_dir = self.out_root / _now_stamp()
        job.set_state("queued")
        for photo in job.photos:
            job.set_photo(photo, "queued")
        self.jobs.put(job)

    def _loop(self) -> None:
        while True:
            job = self.jobs.get()
            if job.cancel.is_set():
                self._cancel_rest(job)
                continue
            job.set_state("running")
            try:
                self.run_job(job, self._cancel_rest)
            except Exception as e:  # noqa: BLE001 - the page says what went wrong; the worker lives on
                for photo in job.photos:
                    if photo.state not in ("done", "error", "cancelled"):
                        job.set_photo(photo, "error", f"could not be protected ({type(e).__name__}: {e})")
            job.set_state("cancelled" if job.cancel.is_set() else "done")

    @staticmethod
    def _cancel_rest(job: Job) -> None:
        for photo in job.photos:
            if photo.state not in ("done", "error", "cancelled"):
                job.set_photo(photo, "cancelled", "cancelled before it started")


def new_job(root: Path) -> Job:
    job_id = uuid.uuid4().hex[:16]
    folder = root / job_id
    folder.mkdir(parents=True)
    return Job(job_id, folder)


def top_classes(probs: np.ndarray, labels, sensitive, k: int = 3) -> dict:
    """The ``k`` likeliest classes of one image and whether the first is a sensitive scene."""
    order = np.argsort(-probs)[:k]
    return {
        "top": [{"label": labels[i], "prob": float(probs[i])} for i in order],
        "sensitive": bool(sensitive) and int(order[0]) in sensitive,
        "has_sensitive_group": bool(sensitive),
    }


def read_rgb(path: Path) -> np.ndarray | None:
    try:
        return read_image(path).rgb
    except ImageReadError:
        return None
