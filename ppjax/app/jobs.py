"""The page's work: jobs of uploaded photos, protected one job at a time by one JAX worker thread.

A :class:`Job` holds its photos (each uploaded into the job's own folder under a safe name), the
settings the person chose, and the list of events the page reads (one per change of a photo's
state, and of the job's; each says how many photos are finished, so that the page's status line
and its cards agree). :class:`Worker` protects queued jobs in turn with
:func:`ppjax.protect.runner.run`, writing each protected photo into the job's own output folder the
moment it is final, and adds what the classifier infers from the original and from the protected
file (its top classes through the Places365 demo's view, 256 and a centre 224) to each photo's
result.

Cancel ends a job in every state at once: photos not finished are marked cancelled and the job's
event stream ends; a photo the worker is still computing is discarded when it comes back, never
written (see :meth:`Job.cancel_now`).
"""

from __future__ import annotations

import datetime as _dt
import itertools
import queue
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ppjax.io.images import DEFAULT_MAX_PIXELS, ImageReadError, read_header, read_image
from ppjax.io.naming import fit_name_bytes

__all__ = ["Photo", "Job", "Worker", "safe_name", "UploadRefused", "FINAL_STATES", "batch_folder", "write_preview"]

#: The states a photo goes through, in the page's words.
STATES = ("uploading", "ready", "queued", "compiling", "protecting", "verifying", "done", "skipped", "error", "cancelled")
#: The states a photo does not leave.
FINAL_STATES = ("done", "skipped", "error", "cancelled")
#: The longest name an upload keeps, in UTF-8 bytes (its output's staging names must fit beside it).
_NAME_BYTES = 120


class UploadRefused(ValueError):
    """An upload that is not taken, with the sentence the page shows."""


def safe_name(name: str, taken: set[str]) -> str:
    """A file name for an upload: its last path part only, no control or path characters, at most
    :data:`_NAME_BYTES` bytes in UTF-8 (cut at a character), not one of ``taken`` (compared in
    lower case; a number added)."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = re.sub(r"[\x00-\x1f\x7f<>:\"|?*]", "_", base).strip(" .") or "photo"
    stem, dot, suffix = base.rpartition(".")
    stem, suffix = (stem, "." + suffix) if dot and stem else (base, "")
    if len(suffix.encode()) > 16:  # not a suffix: part of the name
        stem, suffix = stem + suffix, ""
    candidate, n = fit_name_bytes(stem, suffix, _NAME_BYTES), 2
    while candidate.lower() in taken:
        candidate = fit_name_bytes(stem, f"-{n}{suffix}", _NAME_BYTES)
        n += 1
    return candidate


def write_preview(rgb: np.ndarray | None, target: Path, side: int = 900) -> bool:
    """A JPEG of at most ``side`` pixels a side of (H, W, 3) uint8 pixels, for the page (browsers
    show no HEIC), written atomically; False when there are no pixels (the file was unreadable)."""
    from PIL import Image

    from ppjax.io.images import write_image

    if rgb is None:
        return False
    img = Image.fromarray(rgb)
    img.thumbnail((side, side), Image.Resampling.LANCZOS)
    write_image(target, np.asarray(img), jpeg_quality=88)
    return True


@dataclass
class Photo:
    """One uploaded photo of a job: its stored original, the output once written, its state, and
    its previews (JPEGs for the page) once made."""

    index: int
    name: str
    original: Path
    size: tuple[int, int]
    state: str = "ready"
    message: str = ""
    output: Path | None = None
    result: dict | None = None
    previews: dict = field(default_factory=dict)


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
    #: Re-entrant: a state change emits its event under the same lock.
    lock: threading.RLock = field(default_factory=threading.RLock)

    def emit(self, event: dict) -> None:
        with self.lock:
            finished = sum(p.state in FINAL_STATES for p in self.photos)
            self.events.append({**event, "finished": finished, "total": len(self.photos), "at": time.time()})

    def set_photo(self, photo: Photo, state: str, message: str = "", **extra) -> None:
        with self.lock:
            photo.state, photo.message = state, message
            self.emit({"type": "photo", "index": photo.index, "name": photo.name, "state": state, "message": message, **extra})

    def set_state(self, state: str) -> None:
        with self.lock:
            self.state = state
            self.emit({"type": "job", "state": state})

    @property
    def ended(self) -> bool:
        return self.state in ("done", "cancelled")

    def cancel_now(self, why: str = "cancelled") -> bool:
        """End the job now, whatever its state: every photo not finished is cancelled (a photo the
        worker is computing is discarded when it comes back). False when it had ended already."""
        with self.lock:
            if self.ended:
                return False
            self.cancel.set()
            self._end_unfinished("cancelled", why)
            self.set_state("cancelled")
            return True

    def fail_unfinished(self, message: str) -> None:
        """Every photo not finished ends in error, saying ``message``."""
        self._end_unfinished("error", message)

    def _end_unfinished(self, state: str, message: str) -> None:
        with self.lock:
            for photo in self.photos:
                if photo.state not in FINAL_STATES:
                    self.set_photo(photo, state, message)

    def add_upload(self, filename: str, data_path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Photo:
        """Take an uploaded file (already saved at ``data_path``, inside this job's folder) as a photo,
        or raise :class:`UploadRefused` saying why. Its header is read, nothing decoded, before it
        is taken; then its preview is made."""
        try:
            size = read_header(data_path, max_pixels).size
        except ImageReadError as e:
            raise UploadRefused(f"{filename}: {e.reason}") from None
        with self.lock:
            if self.state != "open":
                raise UploadRefused(f"{filename}: this batch has started; add photos to a new one")
            name = safe_name(filename, {p.name.lower() for p in self.photos})
            target = self.folder / "originals" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            data_path.replace(target)
            photo = Photo(len(self.photos), name, target, size)
            self.photos.append(photo)
        preview = self.folder / "previews" / f"{photo.index}-before.jpg"
        if write_preview(read_rgb(target), preview):
            photo.previews["before"] = preview
        self.set_photo(photo, "ready")
        return photo


def _now_stamp() -> str:
    return _dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")


def batch_folder(root: Path) -> Path:
    """A new folder under ``root`` for one batch's outputs, named by the time and never shared: a
    second batch in the same second gets ``-2``, and so on (the folder is made here, atomically)."""
    root.mkdir(parents=True, exist_ok=True)
    stamp = _now_stamp()
    for n in itertools.count(1):
        folder = root / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue
    raise AssertionError("unreachable")


class Worker:
    """Runs queued jobs one at a time on a thread of its own (the one JAX worker, so the server
    stays responsive): ``run_job(job)`` protects a job's photos into ``job.out_dir`` (a folder of
    its own under ``out_root``), reporting through the job's events. ``on_batch(folder)`` hears
    each batch folder as it is made."""

    def __init__(self, out_root: Path, run_job: Callable[[Job], None], on_batch: Callable[[Path], None] | None = None):
        self.out_root = Path(out_root)
        self.run_job = run_job
        self.on_batch = on_batch
        self.jobs: "queue.SimpleQueue[Job]" = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._loop, name="ppjax-app-worker", daemon=True)
        self.thread.start()

    def submit(self, job: Job) -> None:
        """Queue ``job`` in a batch folder of its own (raises OSError when it cannot be made)."""
        folder = batch_folder(self.out_root)
        with job.lock:
            if job.ended:  # cancelled before it could be queued
                folder.rmdir()
                return
            job.out_dir = folder
            job.set_state("queued")
            for photo in job.photos:
                job.set_photo(photo, "queued")
        if self.on_batch:
            self.on_batch(folder)
        self.jobs.put(job)

    def _loop(self) -> None:
        while True:
            job = self.jobs.get()
            with job.lock:
                if job.ended:  # cancelled while it waited
                    continue
                job.set_state("running")
            try:
                self.run_job(job)
            except Exception as e:  # noqa: BLE001 - the page says what went wrong; the worker lives on
                job.fail_unfinished(f"could not be protected ({type(e).__name__}: {e})")
            with job.lock:
                if not job.ended:
                    job.fail_unfinished("the worker ended without a result for it")  # none should be left waiting
                    job.set_state("done")


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
